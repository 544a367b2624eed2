//! A small UCUM table: the common clinical units with their SI prefixes, products, quotients
//! and exponents (`mg/dL`, `kg/m2`, `10*3/uL`, `mm[Hg]`), enough to compare and convert
//! quantities of comparable units and to give search a canonical form. Special units with an
//! offset (`Cel`, `[degF]`) and arbitrary units (`[IU]`) convert only to themselves.

use std::cell::RefCell;
use std::sync::Arc;

/// Exponents of the base dimensions: metre, gram, second, kelvin, mole, ampere, candela.
pub type Dims = [i8; 7];

/// A unit reduced to a factor of base units and their dimensions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unit {
    pub factor: f64,
    pub dims: Dims,
}

const M: Dims = [1, 0, 0, 0, 0, 0, 0];
const G: Dims = [0, 1, 0, 0, 0, 0, 0];
const S: Dims = [0, 0, 1, 0, 0, 0, 0];
const K: Dims = [0, 0, 0, 1, 0, 0, 0];
const MOL: Dims = [0, 0, 0, 0, 1, 0, 0];
const AMP: Dims = [0, 0, 0, 0, 0, 1, 0];
const CD: Dims = [0, 0, 0, 0, 0, 0, 1];
const ONE: Dims = [0; 7];
const VOL: Dims = [3, 0, 0, 0, 0, 0, 0];
const PRESSURE: Dims = [-1, 1, -2, 0, 0, 0, 0];
const FORCE: Dims = [1, 1, -2, 0, 0, 0, 0];
const ENERGY: Dims = [2, 1, -2, 0, 0, 0, 0];
const POWER: Dims = [2, 1, -3, 0, 0, 0, 0];
const FREQ: Dims = [0, 0, -1, 0, 0, 0, 0];
const CATALYTIC: Dims = [0, 0, -1, 0, 1, 0, 0];

/// (code, factor to base units, dimensions, takes SI prefixes)
const ATOMS: &[(&str, f64, Dims, bool)] = &[
    ("m", 1.0, M, true),
    ("g", 1.0, G, true),
    ("s", 1.0, S, true),
    ("K", 1.0, K, true),
    ("mol", 1.0, MOL, true),
    ("A", 1.0, AMP, true),
    ("cd", 1.0, CD, true),
    ("min", 60.0, S, false),
    ("h", 3600.0, S, false),
    ("d", 86_400.0, S, false),
    ("wk", 604_800.0, S, false),
    ("mo", 2_629_800.0, S, false),
    ("a", 31_557_600.0, S, false),
    ("L", 0.001, VOL, true),
    ("l", 0.001, VOL, true),
    ("t", 1.0e6, G, true),
    ("Pa", 1000.0, PRESSURE, true),
    ("bar", 1.0e8, PRESSURE, true),
    ("atm", 101_325_000.0, PRESSURE, false),
    ("mm[Hg]", 133_322.387_415, PRESSURE, false),
    ("cm[H2O]", 98_066.5, PRESSURE, false),
    ("N", 1000.0, FORCE, true),
    ("J", 1000.0, ENERGY, true),
    ("cal", 4184.0, ENERGY, true),
    ("W", 1000.0, POWER, true),
    ("Hz", 1.0, FREQ, true),
    ("kat", 1.0, CATALYTIC, true),
    ("U", 1.0e-6 / 60.0, CATALYTIC, true),
    ("eq", 1.0, MOL, true),
    ("%", 0.01, ONE, false),
    ("[ppm]", 1.0e-6, ONE, false),
    ("[ppb]", 1.0e-9, ONE, false),
    ("1", 1.0, ONE, false),
    ("rad", 1.0, ONE, true),
    ("deg", std::f64::consts::PI / 180.0, ONE, false),
    ("[lb_av]", 453.592_37, G, false),
    ("[oz_av]", 28.349_523_125, G, false),
    ("[gr]", 0.064_798_91, G, false),
    ("[in_i]", 0.0254, M, false),
    ("[ft_i]", 0.3048, M, false),
    ("[yd_i]", 0.9144, M, false),
    ("[mi_i]", 1609.344, M, false),
    ("[gal_us]", 0.003_785_411_784, VOL, false),
    ("[foz_us]", 2.957_352_956_25e-5, VOL, false),
    ("[pt_us]", 4.731_764_73e-4, VOL, false),
    ("[qt_us]", 9.463_529_46e-4, VOL, false),
    ("[cup_us]", 2.365_882_365e-4, VOL, false),
    ("[tsp_us]", 4.928_921_593_75e-6, VOL, false),
    ("[tbs_us]", 1.478_676_478_125e-5, VOL, false),
];

const PREFIXES: &[(&str, f64)] = &[
    ("da", 1e1),
    ("Y", 1e24),
    ("Z", 1e21),
    ("E", 1e18),
    ("P", 1e15),
    ("T", 1e12),
    ("G", 1e9),
    ("M", 1e6),
    ("k", 1e3),
    ("h", 1e2),
    ("d", 1e-1),
    ("c", 1e-2),
    ("m", 1e-3),
    ("u", 1e-6),
    ("n", 1e-9),
    ("p", 1e-12),
    ("f", 1e-15),
    ("a", 1e-18),
];

fn atom(code: &str) -> Option<(f64, Dims)> {
    if let Some(&(_, f, d, _)) = ATOMS.iter().find(|a| a.0 == code) {
        return Some((f, d));
    }
    for (p, pf) in PREFIXES {
        if let Some(rest) = code.strip_prefix(p) {
            if let Some(&(_, f, d, true)) = ATOMS.iter().find(|a| a.0 == rest) {
                return Some((f * pf, d));
            }
        }
    }
    None
}

/// One factor of a product: `mg`, `m2`, `s-1`, `10*3`, `{cells}`.
fn component(text: &str) -> Option<Unit> {
    // Annotations in braces carry no meaning for conversion.
    let text = match text.find('{') {
        Some(i) => {
            let before = &text[..i];
            if !text.ends_with('}') {
                return None;
            }
            if before.is_empty() {
                return Some(Unit {
                    factor: 1.0,
                    dims: ONE,
                });
            }
            before
        }
        None => text,
    };
    if let Some(exp) = text
        .strip_prefix("10*")
        .or_else(|| text.strip_prefix("10^"))
    {
        let e: i32 = exp.parse().ok()?;
        return Some(Unit {
            factor: 10f64.powi(e),
            dims: ONE,
        });
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Unit {
            factor: text.parse().ok()?,
            dims: ONE,
        });
    }
    // A trailing signed integer is an exponent, except inside a bracketed atom.
    let bytes = text.as_bytes();
    let mut cut = bytes.len();
    while cut > 0 && bytes[cut - 1].is_ascii_digit() {
        cut -= 1;
    }
    if cut < bytes.len() && cut > 0 && bytes[cut - 1] == b'-' {
        cut -= 1;
    }
    let (code, exp) = if cut > 0 && cut < bytes.len() && !text.ends_with(']') {
        (&text[..cut], text[cut..].parse::<i32>().ok()?)
    } else {
        (text, 1)
    };
    let (factor, dims) = atom(code)?;
    let mut out = [0i8; 7];
    for (o, d) in out.iter_mut().zip(dims) {
        *o = d.checked_mul(i8::try_from(exp).ok()?)?;
    }
    Some(Unit {
        factor: factor.powi(exp),
        dims: out,
    })
}

/// Parses a UCUM unit expression made of components joined by `.` and `/`. Results are
/// memoised per thread: a server sees the same few dozen units over and over.
pub fn parse(code: &str) -> Option<Unit> {
    thread_local! {
        static CACHE: RefCell<crate::nav::FnvMap<String, Option<Unit>>> = RefCell::new(Default::default());
    }
    if let Some(hit) = CACHE.with(|c| c.borrow().get(code).copied()) {
        return hit;
    }
    let parsed = parse_uncached(code);
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        // Units come from data: keep the cache bounded.
        if c.len() >= 4096 {
            c.clear();
        }
        c.insert(code.to_string(), parsed);
    });
    parsed
}

fn parse_uncached(code: &str) -> Option<Unit> {
    if code.is_empty() {
        return Some(Unit {
            factor: 1.0,
            dims: ONE,
        });
    }
    let mut unit = Unit {
        factor: 1.0,
        dims: ONE,
    };
    let mut divide = false;
    let mut start = 0;
    let bytes = code.as_bytes();
    let mut depth = 0;
    for i in 0..=bytes.len() {
        let c = bytes.get(i).copied();
        match c {
            Some(b'[') | Some(b'{') => depth += 1,
            Some(b']') | Some(b'}') => depth -= 1,
            _ => {}
        }
        let boundary = depth == 0 && matches!(c, None | Some(b'.') | Some(b'/'));
        if !boundary {
            continue;
        }
        let part = &code[start..i];
        if !part.is_empty() {
            let u = component(part)?;
            if divide {
                unit.factor /= u.factor;
                for (a, b) in unit.dims.iter_mut().zip(u.dims) {
                    *a -= b;
                }
            } else {
                unit.factor *= u.factor;
                for (a, b) in unit.dims.iter_mut().zip(u.dims) {
                    *a += b;
                }
            }
        } else if i > 0 {
            return None;
        }
        if c == Some(b'/') {
            divide = true;
        } else if c == Some(b'.') {
            divide = false;
        }
        start = i + 1;
    }
    Some(unit)
}

/// Converts `value` from one unit to another when both are known and comparable.
pub fn convert(value: f64, from: &str, to: &str) -> Option<f64> {
    if from == to {
        return Some(value);
    }
    let (f, t) = (parse(from)?, parse(to)?);
    (f.dims == t.dims).then(|| value * f.factor / t.factor)
}

/// Canonical units by UCUM code (`None`: the code does not parse).
type CanonicalCache = crate::nav::FnvMap<String, Option<(f64, Arc<str>)>>;

/// The canonical form of a quantity: its value in base units and the base-unit expression
/// (`1 mg/dL` is `10 g.m-3`), used by search to compare quantities written in different units.
/// The unit text is shared (memoised per thread and unit code).
pub fn canonical(value: f64, code: &str) -> Option<(f64, Arc<str>)> {
    thread_local! {
        static CACHE: RefCell<CanonicalCache> = RefCell::new(Default::default());
    }
    let hit = CACHE.with(|c| c.borrow().get(code).cloned());
    let (factor, text) = match hit {
        Some(found) => found?,
        None => {
            let computed = canonical_unit(code);
            CACHE.with(|c| {
                let mut c = c.borrow_mut();
                if c.len() >= 4096 {
                    c.clear();
                }
                c.insert(code.to_string(), computed.clone());
            });
            computed?
        }
    };
    Some((value * factor, text))
}

fn canonical_unit(code: &str) -> Option<(f64, Arc<str>)> {
    let u = parse(code)?;
    let names = ["m", "g", "s", "K", "mol", "A", "cd"];
    let mut text = String::new();
    for (name, e) in names.iter().zip(u.dims) {
        if e == 0 {
            continue;
        }
        if !text.is_empty() {
            text.push('.');
        }
        text.push_str(name);
        if e != 1 {
            text.push_str(&e.to_string());
        }
    }
    if text.is_empty() {
        text.push('1');
    }
    Some((u.factor, Arc::from(text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() <= 1e-9 * b.abs().max(1.0))
    }

    #[test]
    fn converts_common_clinical_units() {
        assert!(close(convert(1.0, "kg", "g"), 1000.0));
        assert!(close(convert(185.0, "[lb_av]", "kg"), 83.914_588_45));
        assert!(close(convert(1.0, "mg/dL", "g/L"), 0.01));
        assert!(close(convert(1.0, "wk", "d"), 7.0));
        assert!(close(convert(120.0, "mm[Hg]", "kPa"), 15.998_686_49));
        assert!(close(convert(1.0, "m2", "cm2"), 10_000.0));
        assert!(close(convert(5.0, "10*3/uL", "10*9/L"), 5.0));
        assert!(close(convert(1.0, "/min", "Hz"), 1.0 / 60.0));
        assert!(convert(1.0, "kg", "m").is_none());
        assert!(parse("Cel").is_none());
        assert_eq!(
            canonical(1.0, "mg/dL").map(|c| c.1.to_string()),
            Some("m-3.g".to_string())
        );
    }
}
