//! The ceiling for read benchmarks: a bare axum handler returning a fixed Patient JSON from
//! memory, on the same runtime settings as `flint serve`. Usage: `bare_axum PORT FILE`.

use axum::http::header;
use axum::routing::get;
use axum::Router;

fn main() {
    let mut args = std::env::args().skip(1);
    let port = args.next().unwrap_or_else(|| "8090".into());
    let file = args.next().expect("a JSON file to serve");
    let body: &'static str = Box::leak(
        std::fs::read_to_string(file)
            .expect("read the JSON file")
            .into_boxed_str(),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let app = Router::new().route(
            "/fhir/Patient/{id}",
            get(move || async move {
                (
                    [(header::CONTENT_TYPE, "application/fhir+json;charset=utf-8")],
                    body,
                )
            }),
        );
        let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{port}"))
            .await
            .expect("bind");
        println!("bare axum listening on {port}");
        axum::serve(listener, app).await.expect("serve");
    });
}
