// Flint sandbox prelude.
//
// Compiled once per process to QuickJS bytecode and evaluated once in every
// realm (a QuickJS context that then serves many invocations). The script's
// completion value is the installer function below; Rust calls it with the host
// functions (which are therefore never reachable as globals) and receives the
// runner object that prepares and calls the user's handler.
//
// Before the runner is returned the realm is locked down: every object reachable
// from the global object (and the intrinsics that are not) is frozen, every global
// binding made read-only, and the context-level hooks (`Error.prepareStackTrace`,
// `Error.stackTraceLimit`) fixed. Built-in prototypes' methods are accessors whose
// setter defines an own property on the instance, so `err.name = 'X'` and
// `obj.toString = f` keep working ("override mistake"). What an invocation can
// still change — new global properties — `reset()` removes afterwards.
//
// Everything here runs inside the sandbox: it is convenience, not a security
// boundary. The boundary is QuickJS itself plus the four host functions.
(function (hostRequest, hostLog, hostUuid, hostRandom) {
  'use strict';

  const G = globalThis;
  const jsonStringify = JSON.stringify;
  const jsonParse = JSON.parse;
  const defineProperty = Object.defineProperty;
  const CORE_KEY = Symbol.for('flint.sandbox.medplum-core');

  function defineGlobal(name, value) {
    defineProperty(G, name, { value, writable: true, configurable: true, enumerable: false });
  }

  // ---------------------------------------------------------------- console
  function formatValue(v) {
    switch (typeof v) {
      case 'string':
        return v;
      case 'undefined':
        return 'undefined';
      case 'function':
        return '[Function: ' + (v.name || '(anonymous)') + ']';
      case 'symbol':
        return v.toString();
      case 'bigint':
        return v.toString() + 'n';
      case 'number':
      case 'boolean':
        return String(v);
      default:
        break;
    }
    if (v === null) return 'null';
    if (v instanceof Error) {
      const head = String(v);
      return typeof v.stack === 'string' && v.stack ? head + '\n' + v.stack.replace(/\n$/, '') : head;
    }
    try {
      const s = jsonStringify(v);
      return s === undefined ? String(v) : s;
    } catch (e) {
      try {
        return String(v);
      } catch (e2) {
        return '[object]';
      }
    }
  }

  function logger(level) {
    return function (...args) {
      let message = '';
      for (let i = 0; i < args.length; i++) {
        if (i > 0) message += ' ';
        message += formatValue(args[i]);
      }
      hostLog(level, message);
    };
  }

  const console = {
    debug: logger(0),
    trace: logger(0),
    log: logger(1),
    info: logger(1),
    warn: logger(2),
    error: logger(3),
  };
  defineGlobal('console', console);

  // ----------------------------------------------------------------- crypto
  const crypto = {
    randomUUID() {
      return hostUuid();
    },
    getRandomValues(array) {
      if (!ArrayBuffer.isView(array) || array instanceof Float32Array || array instanceof Float64Array || array instanceof DataView) {
        throw new TypeError('getRandomValues: an integer typed array is required');
      }
      if (array.byteLength > 65536) {
        throw new RangeError('getRandomValues: at most 65536 bytes can be requested');
      }
      const hex = hostRandom(array.byteLength);
      const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
      for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(hex.substr(i * 2, 2), 16);
      return array;
    },
  };
  defineGlobal('crypto', crypto);

  // ------------------------------------------------------------------ UTF-8
  function toWellFormed(s) {
    s = String(s);
    return typeof s.toWellFormed === 'function' ? s.toWellFormed() : s;
  }

  function utf8Encode(s) {
    s = toWellFormed(s);
    const out = [];
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        out.push(c);
      } else if (c < 0x800) {
        out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
      } else if (c >= 0xd800 && c <= 0xdbff) {
        const d = s.charCodeAt(++i);
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      } else {
        out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
      }
    }
    return new Uint8Array(out);
  }

  // Decodes UTF-8 with WHATWG replacement semantics (maximal subpart).
  function utf8Decode(bytes, fatal) {
    let result = '';
    let chunk = [];
    const n = bytes.length;
    let i = 0;
    const bad = () => {
      if (fatal) throw new TypeError('The encoded data was not valid for encoding utf-8');
      chunk.push(0xfffd);
    };
    while (i < n) {
      const b = bytes[i];
      if (b < 0x80) {
        chunk.push(b);
        i++;
      } else {
        let need;
        let cp;
        let lower = 0x80;
        let upper = 0xbf;
        if (b >= 0xc2 && b <= 0xdf) {
          need = 1;
          cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
          need = 2;
          cp = b & 0x0f;
          if (b === 0xe0) lower = 0xa0;
          if (b === 0xed) upper = 0x9f;
        } else if (b >= 0xf0 && b <= 0xf4) {
          need = 3;
          cp = b & 0x07;
          if (b === 0xf0) lower = 0x90;
          if (b === 0xf4) upper = 0x8f;
        } else {
          bad();
          i++;
          continue;
        }
        let j = i + 1;
        let ok = true;
        for (let k = 0; k < need; k++, j++) {
          const c = j < n ? bytes[j] : -1;
          if (c < lower || c > upper) {
            ok = false;
            break;
          }
          lower = 0x80;
          upper = 0xbf;
          cp = (cp << 6) | (c & 0x3f);
        }
        if (ok) chunk.push(cp);
        else bad();
        i = j;
      }
      if (chunk.length >= 4096) {
        result += String.fromCodePoint.apply(null, chunk);
        chunk = [];
      }
    }
    if (chunk.length) result += String.fromCodePoint.apply(null, chunk);
    return result;
  }

  function bytesOf(input) {
    if (input === undefined) return new Uint8Array(0);
    if (input instanceof ArrayBuffer) return new Uint8Array(input);
    if (ArrayBuffer.isView(input)) return new Uint8Array(input.buffer, input.byteOffset, input.byteLength);
    throw new TypeError('TextDecoder.decode: an ArrayBuffer or a view of one is required');
  }

  class TextEncoder {
    get encoding() {
      return 'utf-8';
    }
    encode(input = '') {
      return utf8Encode(input);
    }
    encodeInto(input, dest) {
      const s = toWellFormed(input);
      let read = 0;
      let written = 0;
      for (let i = 0; i < s.length; ) {
        const cp = s.codePointAt(i);
        const units = cp > 0xffff ? 2 : 1;
        const bytes = utf8Encode(String.fromCodePoint(cp));
        if (written + bytes.length > dest.length) break;
        dest.set(bytes, written);
        written += bytes.length;
        read += units;
        i += units;
      }
      return { read, written };
    }
  }

  class TextDecoder {
    #fatal;
    #ignoreBOM;
    constructor(label = 'utf-8', options = {}) {
      const l = String(label).trim().toLowerCase();
      if (l !== 'utf-8' && l !== 'utf8' && l !== 'unicode-1-1-utf-8') {
        throw new RangeError("TextDecoder: only 'utf-8' is supported, not '" + label + "'");
      }
      this.#fatal = !!(options && options.fatal);
      this.#ignoreBOM = !!(options && options.ignoreBOM);
    }
    get encoding() {
      return 'utf-8';
    }
    get fatal() {
      return this.#fatal;
    }
    get ignoreBOM() {
      return this.#ignoreBOM;
    }
    decode(input) {
      let bytes = bytesOf(input);
      if (!this.#ignoreBOM && bytes.length >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) {
        bytes = bytes.subarray(3);
      }
      return utf8Decode(bytes, this.#fatal);
    }
  }
  defineGlobal('TextEncoder', TextEncoder);
  defineGlobal('TextDecoder', TextDecoder);

  // --------------------------------------------------------- URLSearchParams
  function formEncode(s) {
    return encodeURIComponent(toWellFormed(s))
      .replace(/%20/g, '+')
      .replace(/[!'()~]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  }

  function percentDecode(s) {
    return s.replace(/(?:%[0-9A-Fa-f]{2})+/g, (run) => {
      try {
        return decodeURIComponent(run);
      } catch (e) {
        const bytes = [];
        for (let i = 0; i < run.length; i += 3) bytes.push(parseInt(run.substr(i + 1, 2), 16));
        return utf8Decode(bytes, false);
      }
    });
  }

  function formDecode(s) {
    return percentDecode(s.replace(/\+/g, ' '));
  }

  function parseQuery(s) {
    const list = [];
    if (s.startsWith('?')) s = s.slice(1);
    for (const part of s.split('&')) {
      if (part === '') continue;
      const eq = part.indexOf('=');
      if (eq < 0) list.push([formDecode(part), '']);
      else list.push([formDecode(part.slice(0, eq)), formDecode(part.slice(eq + 1))]);
    }
    return list;
  }

  class URLSearchParams {
    #list = [];
    #url = null;
    constructor(init = '') {
      if (init instanceof URLSearchParams) {
        this.#list = init.#list.map((p) => [p[0], p[1]]);
      } else if (init !== null && typeof init === 'object' && typeof init[Symbol.iterator] === 'function') {
        for (const pair of init) {
          const p = Array.from(pair);
          if (p.length !== 2) throw new TypeError('URLSearchParams: each pair must have exactly two items');
          this.#list.push([toWellFormed(p[0]), toWellFormed(p[1])]);
        }
      } else if (init !== null && typeof init === 'object') {
        for (const key of Object.keys(init)) this.#list.push([toWellFormed(key), toWellFormed(init[key])]);
      } else if (init !== undefined && init !== null) {
        this.#list = parseQuery(toWellFormed(init));
      }
    }
    static _attach(params, url) {
      params.#url = url;
    }
    static _reset(params, query) {
      params.#list = parseQuery(query);
    }
    #update() {
      if (this.#url) this.#url._setSearchFromParams(this.toString());
    }
    get size() {
      return this.#list.length;
    }
    append(name, value) {
      this.#list.push([toWellFormed(name), toWellFormed(value)]);
      this.#update();
    }
    delete(name, value) {
      name = toWellFormed(name);
      if (value === undefined) this.#list = this.#list.filter((p) => p[0] !== name);
      else {
        value = toWellFormed(value);
        this.#list = this.#list.filter((p) => p[0] !== name || p[1] !== value);
      }
      this.#update();
    }
    get(name) {
      name = toWellFormed(name);
      const p = this.#list.find((q) => q[0] === name);
      return p ? p[1] : null;
    }
    getAll(name) {
      name = toWellFormed(name);
      return this.#list.filter((p) => p[0] === name).map((p) => p[1]);
    }
    has(name, value) {
      name = toWellFormed(name);
      if (value === undefined) return this.#list.some((p) => p[0] === name);
      value = toWellFormed(value);
      return this.#list.some((p) => p[0] === name && p[1] === value);
    }
    set(name, value) {
      name = toWellFormed(name);
      value = toWellFormed(value);
      const i = this.#list.findIndex((p) => p[0] === name);
      if (i < 0) this.#list.push([name, value]);
      else {
        this.#list[i][1] = value;
        this.#list = this.#list.filter((p, j) => j <= i || p[0] !== name);
      }
      this.#update();
    }
    sort() {
      const indexed = this.#list.map((p, i) => [p, i]);
      indexed.sort((a, b) => (a[0][0] < b[0][0] ? -1 : a[0][0] > b[0][0] ? 1 : a[1] - b[1]));
      this.#list = indexed.map((x) => x[0]);
      this.#update();
    }
    forEach(callback, thisArg) {
      for (const [k, v] of this.#list.slice()) callback.call(thisArg, v, k, this);
    }
    *entries() {
      for (const [k, v] of this.#list.slice()) yield [k, v];
    }
    *keys() {
      for (const p of this.#list.slice()) yield p[0];
    }
    *values() {
      for (const p of this.#list.slice()) yield p[1];
    }
    [Symbol.iterator]() {
      return this.entries();
    }
    toString() {
      return this.#list.map((p) => formEncode(p[0]) + '=' + formEncode(p[1])).join('&');
    }
    get [Symbol.toStringTag]() {
      return 'URLSearchParams';
    }
  }
  const attachParams = URLSearchParams._attach;
  const resetParams = URLSearchParams._reset;
  delete URLSearchParams._attach;
  delete URLSearchParams._reset;
  defineGlobal('URLSearchParams', URLSearchParams);

  // -------------------------------------------------------------------- URL
  const SPECIAL = { 'http:': '80', 'https:': '443', 'ws:': '80', 'wss:': '443', 'ftp:': '21', 'file:': '' };

  function encodeWith(s, re) {
    return toWellFormed(s).replace(re, (c) => encodeURIComponent(c));
  }
  // Characters to percent-encode (the WHATWG percent-encode sets, simplified).
  const PATH_SET = /[\u0000-\u0020"#<>?`{}\u007f-\uffff]/g;
  const QUERY_SET = /[\u0000-\u0020"#<>\u007f-\uffff]/g;
  const SPECIAL_QUERY_SET = /[\u0000-\u0020"#<>'\u007f-\uffff]/g;
  const FRAGMENT_SET = /[\u0000-\u0020"<>`\u007f-\uffff]/g;
  const USERINFO_SET = /[\u0000-\u0020"#<>?`{}/:;=@[\\\]^|\u007f-\uffff]/g;
  const OPAQUE_SET = /[\u0000-\u001f\u007f-\uffff]/g;

  function invalid(input) {
    return new TypeError('Invalid URL: ' + input);
  }

  function removeDotSegments(path) {
    const segments = path.split('/');
    const out = [];
    for (let i = 0; i < segments.length; i++) {
      const seg = segments[i];
      const lower = seg.toLowerCase();
      const last = i === segments.length - 1;
      if (lower === '..' || lower === '.%2e' || lower === '%2e.' || lower === '%2e%2e') {
        if (out.length > 1) out.pop();
        if (last) out.push('');
      } else if (lower === '.' || lower === '%2e') {
        if (last) out.push('');
      } else {
        out.push(seg);
      }
    }
    let result = out.join('/');
    if (!result.startsWith('/')) result = '/' + result;
    return result;
  }

  function splitTail(rest) {
    let hash = '';
    let search = '';
    const h = rest.indexOf('#');
    if (h >= 0) {
      hash = rest.slice(h);
      rest = rest.slice(0, h);
    }
    const q = rest.indexOf('?');
    if (q >= 0) {
      search = rest.slice(q);
      rest = rest.slice(0, q);
    }
    return [rest, search, hash];
  }

  function normSearch(search, special) {
    if (search === '' || search === '?') return '';
    return '?' + encodeWith(search.slice(1), special ? SPECIAL_QUERY_SET : QUERY_SET);
  }

  function normHash(hash) {
    if (hash === '' || hash === '#') return '';
    return '#' + encodeWith(hash.slice(1), FRAGMENT_SET);
  }

  function parseHost(host, special, input) {
    if (host.startsWith('[')) {
      if (!/^\[[0-9A-Fa-f:.]+\]$/.test(host)) throw invalid(input);
      return host.toLowerCase();
    }
    if (special) {
      host = percentDecode(host).toLowerCase();
      if (/[\u0000-\u0020#%/:<>?@[\\\]^|]/.test(host)) throw invalid(input);
      if (host === '' && special) throw invalid(input);
      if (/[^\u0000-\u007f]/.test(host)) throw invalid(input); // no IDNA in the sandbox
      return host;
    }
    if (/[\u0000-\u0020#/:<>?@[\\\]^|]/.test(host)) throw invalid(input);
    return encodeWith(host, OPAQUE_SET);
  }

  function parseAuthority(protocol, rest, input) {
    const special = protocol in SPECIAL;
    let end = rest.length;
    for (const c of special ? ['/', '\\', '?', '#'] : ['/', '?', '#']) {
      const i = rest.indexOf(c);
      if (i >= 0 && i < end) end = i;
    }
    let authority = rest.slice(0, end);
    const tail = rest.slice(end);
    let username = '';
    let password = '';
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const info = authority.slice(0, at);
      authority = authority.slice(at + 1);
      const colon = info.indexOf(':');
      username = encodeWith(colon >= 0 ? info.slice(0, colon) : info, USERINFO_SET);
      password = colon >= 0 ? encodeWith(info.slice(colon + 1), USERINFO_SET) : '';
    }
    let hostname = authority;
    let port = '';
    const m = /:([^:\]]*)$/.exec(authority);
    if (m) {
      hostname = authority.slice(0, m.index);
      port = m[1];
      if (!/^[0-9]*$/.test(port)) throw invalid(input);
      if (port !== '') {
        const n = parseInt(port, 10);
        if (n > 65535) throw invalid(input);
        port = String(n);
        if (SPECIAL[protocol] === port) port = '';
      }
    }
    hostname = parseHost(hostname, special && protocol !== 'file:', input);
    let [path, search, hash] = splitTail(special ? tail.replace(/\\/g, '/') : tail);
    path = path === '' ? (special ? '/' : '') : removeDotSegments(encodeWith(path, PATH_SET));
    return {
      protocol,
      username,
      password,
      hostname,
      port,
      pathname: path,
      search: normSearch(search, special),
      hash: normHash(hash),
      opaque: false,
      authority: true,
    };
  }

  function parseURL(input, base) {
    const raw = String(input);
    let s = raw.replace(/^[\u0000-\u0020]+|[\u0000-\u0020]+$/g, '').replace(/[\t\n\r]/g, '');
    const m = /^([a-zA-Z][a-zA-Z0-9+.\-]*):/.exec(s);
    if (m) {
      const protocol = m[1].toLowerCase() + ':';
      let rest = s.slice(m[0].length);
      if (protocol in SPECIAL) {
        rest = rest.replace(/\\/g, '/');
        if (base && base.protocol === protocol && !rest.startsWith('/')) {
          return parseRelative(rest, base, raw);
        }
        return parseAuthority(protocol, rest.replace(/^\/*/, ''), raw);
      }
      if (rest.startsWith('//')) return parseAuthority(protocol, rest.slice(2), raw);
      const [path, search, hash] = splitTail(rest);
      return {
        protocol,
        username: '',
        password: '',
        hostname: '',
        port: '',
        pathname: path.startsWith('/') ? removeDotSegments(encodeWith(path, PATH_SET)) : encodeWith(path, OPAQUE_SET),
        search: normSearch(search, false),
        hash: normHash(hash),
        opaque: !path.startsWith('/'),
        authority: false,
      };
    }
    if (!base) throw invalid(raw);
    return parseRelative(s, base, raw);
  }

  function parseRelative(s, base, raw) {
    const special = base.protocol in SPECIAL;
    if (special) s = s.replace(/\\/g, '/');
    if (base.opaque) {
      if (s.startsWith('#')) return Object.assign({}, base, { hash: normHash(s) });
      throw invalid(raw);
    }
    if (s.startsWith('//')) return parseAuthority(base.protocol, s.slice(2), raw);
    const r = Object.assign({}, base);
    const [path, search, hash] = splitTail(s);
    r.hash = normHash(hash);
    if (path === '') {
      if (s.startsWith('?')) r.search = normSearch(search, special);
      else if (!s.startsWith('#')) r.search = base.search;
      if (s === '') r.search = base.search;
      if (s.startsWith('#')) r.search = base.search;
      return r;
    }
    r.search = normSearch(search, special);
    const encoded = encodeWith(path, PATH_SET);
    if (path.startsWith('/')) r.pathname = removeDotSegments(encoded);
    else {
      const dir = base.pathname.slice(0, base.pathname.lastIndexOf('/') + 1);
      r.pathname = removeDotSegments((dir || '/') + encoded);
    }
    return r;
  }

  class URL {
    #r;
    #params;
    constructor(url, base) {
      let b = null;
      if (base !== undefined) b = base instanceof URL ? base.#r : parseURL(base, null);
      this.#r = url instanceof URL && base === undefined ? Object.assign({}, url.#r) : parseURL(url, b);
      this.#params = new URLSearchParams(this.#r.search);
      attachParams(this.#params, this);
    }
    static canParse(url, base) {
      try {
        new URL(url, base);
        return true;
      } catch (e) {
        return false;
      }
    }
    static parse(url, base) {
      try {
        return new URL(url, base);
      } catch (e) {
        return null;
      }
    }
    _setSearchFromParams(query) {
      this.#r.search = query === '' ? '' : '?' + query;
    }
    get href() {
      const r = this.#r;
      let s = r.protocol;
      if (r.authority) {
        s += '//';
        if (r.username || r.password) s += r.username + (r.password ? ':' + r.password : '') + '@';
        s += this.host;
      } else if (!r.opaque && r.pathname.startsWith('//')) {
        s += '/.';
      }
      return s + r.pathname + r.search + r.hash;
    }
    set href(v) {
      this.#r = parseURL(v, null);
      resetParams(this.#params, this.#r.search);
    }
    get origin() {
      const r = this.#r;
      if (r.protocol in SPECIAL && r.protocol !== 'file:') return r.protocol + '//' + this.host;
      return 'null';
    }
    get protocol() {
      return this.#r.protocol;
    }
    set protocol(v) {
      const m = /^([a-zA-Z][a-zA-Z0-9+.\-]*)/.exec(String(v));
      if (!m) return;
      const p = m[1].toLowerCase() + ':';
      if ((p in SPECIAL) !== (this.#r.protocol in SPECIAL)) return;
      this.#r.protocol = p;
      if (SPECIAL[p] === this.#r.port) this.#r.port = '';
    }
    get username() {
      return this.#r.username;
    }
    set username(v) {
      if (this.#r.authority && this.#r.hostname) this.#r.username = encodeWith(v, USERINFO_SET);
    }
    get password() {
      return this.#r.password;
    }
    set password(v) {
      if (this.#r.authority && this.#r.hostname) this.#r.password = encodeWith(v, USERINFO_SET);
    }
    get host() {
      return this.#r.hostname + (this.#r.port ? ':' + this.#r.port : '');
    }
    set host(v) {
      if (this.#r.opaque) return;
      const p = parseAuthority(this.#r.protocol, String(v).split(/[/?#]/)[0], v);
      this.#r.hostname = p.hostname;
      this.#r.port = p.port;
    }
    get hostname() {
      return this.#r.hostname;
    }
    set hostname(v) {
      if (this.#r.opaque) return;
      const p = parseAuthority(this.#r.protocol, String(v).split(/[/?#:]/)[0], v);
      this.#r.hostname = p.hostname;
    }
    get port() {
      return this.#r.port;
    }
    set port(v) {
      if (this.#r.opaque || !this.#r.hostname) return;
      const m = /^[0-9]*/.exec(String(v))[0];
      if (m === '') {
        if (String(v) === '') this.#r.port = '';
        return;
      }
      const n = parseInt(m, 10);
      if (n > 65535) return;
      this.#r.port = SPECIAL[this.#r.protocol] === String(n) ? '' : String(n);
    }
    get pathname() {
      return this.#r.pathname;
    }
    set pathname(v) {
      if (this.#r.opaque) return;
      let p = String(v);
      if (this.#r.protocol in SPECIAL) p = p.replace(/\\/g, '/');
      p = encodeWith(p, PATH_SET);
      this.#r.pathname = removeDotSegments(p.startsWith('/') ? p : '/' + p);
    }
    get search() {
      return this.#r.search === '?' ? '' : this.#r.search;
    }
    set search(v) {
      let s = String(v);
      if (s.startsWith('?')) s = s.slice(1);
      this.#r.search = s === '' ? '' : normSearch('?' + s, this.#r.protocol in SPECIAL);
      resetParams(this.#params, this.#r.search);
    }
    get searchParams() {
      return this.#params;
    }
    get hash() {
      return this.#r.hash === '#' ? '' : this.#r.hash;
    }
    set hash(v) {
      let s = String(v);
      if (s.startsWith('#')) s = s.slice(1);
      this.#r.hash = s === '' ? '' : normHash('#' + s);
    }
    toString() {
      return this.href;
    }
    toJSON() {
      return this.href;
    }
    get [Symbol.toStringTag]() {
      return 'URL';
    }
  }
  defineGlobal('URL', URL);

  // ----------------------------------------------------------- @medplum/core
  function isOperationOutcome(value) {
    return value !== null && typeof value === 'object' && value.resourceType === 'OperationOutcome';
  }

  function issueText(issue) {
    if (!issue || typeof issue !== 'object') return undefined;
    if (typeof issue.diagnostics === 'string' && issue.diagnostics) return issue.diagnostics;
    if (issue.details && typeof issue.details.text === 'string' && issue.details.text) return issue.details.text;
    return undefined;
  }

  function operationOutcomeToString(outcome) {
    const issues = outcome && Array.isArray(outcome.issue) ? outcome.issue : [];
    const texts = [];
    for (const issue of issues) {
      let t = issueText(issue);
      if (t === undefined) continue;
      if (Array.isArray(issue.expression) && issue.expression.length) t += ' (' + issue.expression.join(', ') + ')';
      texts.push(t);
    }
    return texts.length ? texts.join('; ') : 'Unknown error';
  }

  function outcome(id, severity, code, text, expression) {
    const issue = { severity, code, details: { text } };
    if (expression) issue.expression = [expression];
    return { resourceType: 'OperationOutcome', id, issue: [issue] };
  }

  const allOk = outcome('allok', 'information', 'informational', 'All OK');
  const created = outcome('created', 'information', 'informational', 'Created');
  const notModified = outcome('not-modified', 'information', 'informational', 'Not Modified');
  const accepted = outcome('accepted', 'information', 'informational', 'Accepted');
  const notFound = outcome('not-found', 'error', 'not-found', 'Not found');
  const unauthorized = outcome('unauthorized', 'error', 'login', 'Unauthorized');
  const forbidden = outcome('forbidden', 'error', 'forbidden', 'Forbidden');
  const gone = outcome('gone', 'error', 'deleted', 'Gone');
  const OK_IDS = ['allok', 'ok', 'created', 'not-modified', 'accepted'];

  function badRequest(details, expression) {
    return outcome('bad-request', 'error', 'invalid', String(details), expression);
  }

  function isOk(value) {
    if (!isOperationOutcome(value)) return false;
    if (typeof value.id === 'string' && OK_IDS.includes(value.id)) return true;
    const issues = Array.isArray(value.issue) ? value.issue : [];
    return !issues.some((i) => i && (i.severity === 'error' || i.severity === 'fatal'));
  }

  class OperationOutcomeError extends Error {
    constructor(outcome, cause) {
      super(operationOutcomeToString(outcome), cause === undefined ? undefined : { cause });
      this.name = 'OperationOutcomeError';
      this.outcome = outcome;
    }
  }

  function normalizeErrorString(error) {
    if (error === undefined || error === null) return 'Unknown error';
    if (typeof error === 'string') return error;
    if (error instanceof Error) {
      if (isOperationOutcome(error.outcome)) return operationOutcomeToString(error.outcome);
      return error.message;
    }
    if (isOperationOutcome(error)) return operationOutcomeToString(error);
    if (typeof error === 'object') {
      if (isOperationOutcome(error.outcome)) return operationOutcomeToString(error.outcome);
      if (typeof error.message === 'string') return error.message;
      if (typeof error.code === 'string') return error.code;
      if (typeof error.error === 'string') return error.error;
    }
    return jsonStringify(error) ?? String(error);
  }

  function normalizeOperationOutcome(error) {
    if (isOperationOutcome(error)) return error;
    if (error && isOperationOutcome(error.outcome)) return error.outcome;
    return badRequest(normalizeErrorString(error));
  }

  function getReferenceString(input) {
    if (!input || typeof input !== 'object') return undefined;
    if (typeof input.reference === 'string') return input.reference;
    if (input.resourceType && input.id) return input.resourceType + '/' + input.id;
    return undefined;
  }

  function resolveId(input) {
    if (!input || typeof input !== 'object') return undefined;
    if (typeof input.resourceType === 'string' && input.id !== undefined) return input.id;
    const ref = input.reference;
    if (typeof ref !== 'string') return undefined;
    const parts = ref.split('/');
    return parts.length >= 2 ? parts[parts.length - 1] : undefined;
  }

  function humanNameString(name) {
    if (!name || typeof name !== 'object') return undefined;
    if (typeof name.text === 'string' && name.text) return name.text;
    const parts = [];
    if (Array.isArray(name.prefix)) parts.push(...name.prefix);
    if (Array.isArray(name.given)) parts.push(...name.given);
    if (name.family) parts.push(name.family);
    if (Array.isArray(name.suffix)) parts.push(...name.suffix);
    return parts.length ? parts.join(' ') : undefined;
  }

  function getDisplayString(resource) {
    if (!resource || typeof resource !== 'object') return undefined;
    const name = resource.name;
    if (typeof name === 'string' && name) return name;
    if (Array.isArray(name) && name.length) {
      const s = humanNameString(name[0]);
      if (s) return s;
    }
    if (resource.code && typeof resource.code.text === 'string' && resource.code.text) return resource.code.text;
    if (typeof resource.title === 'string' && resource.title) return resource.title;
    return getReferenceString(resource);
  }

  function createReference(resource) {
    const reference = getReferenceString(resource);
    const display = getDisplayString(resource);
    return display && display !== reference ? { reference, display } : { reference };
  }

  function deepClone(value) {
    return value === undefined ? undefined : JSON.parse(jsonStringify(value));
  }

  function isResource(value) {
    return value !== null && typeof value === 'object' && typeof value.resourceType === 'string';
  }

  function isReference(value) {
    return value !== null && typeof value === 'object' && typeof value.reference === 'string';
  }

  // Medplum's name formatting: given and family by default; prefix, suffix and use on request.
  function formatHumanName(name, options) {
    if (!name || typeof name !== 'object') return '';
    const o = options || {};
    const parts = [];
    if ((o.prefix || o.all) && Array.isArray(name.prefix)) parts.push(...name.prefix);
    if (Array.isArray(name.given)) parts.push(...name.given);
    if (name.family) parts.push(name.family);
    if ((o.suffix || o.all) && Array.isArray(name.suffix)) parts.push(...name.suffix);
    if ((o.use || o.all) && name.use) parts.push('[' + name.use + ']');
    const text = parts.join(' ').trim();
    return text || (typeof name.text === 'string' ? name.text : '');
  }

  function formatGivenName(name) {
    return name && Array.isArray(name.given) ? name.given.join(' ') : '';
  }

  function formatFamilyName(name) {
    return (name && name.family) || '';
  }

  function getIdentifier(resource, system) {
    const ids = resource && Array.isArray(resource.identifier) ? resource.identifier : [];
    const found = ids.find((i) => i && i.system === system);
    return found ? found.value : undefined;
  }

  function setIdentifier(resource, system, value) {
    if (!Array.isArray(resource.identifier)) resource.identifier = [];
    const found = resource.identifier.find((i) => i && i.system === system);
    if (found) found.value = value;
    else resource.identifier.push({ system, value });
  }

  // The extension at a path of urls (each nested in the one before).
  function getExtension(resource, ...urls) {
    let current = resource;
    for (const url of urls) {
      const list = current && Array.isArray(current.extension) ? current.extension : [];
      current = list.find((e) => e && e.url === url);
      if (!current) return undefined;
    }
    return current;
  }

  function getExtensionValue(resource, ...urls) {
    const ext = getExtension(resource, ...urls);
    if (!ext) return undefined;
    for (const key of Object.keys(ext)) {
      if (key.startsWith('value')) return ext[key];
    }
    return undefined;
  }

  function isString(value) {
    return typeof value === 'string';
  }

  function isEmpty(value) {
    if (value === undefined || value === null || value === '') return true;
    if (Array.isArray(value)) return value.length === 0;
    if (typeof value === 'object') return Object.keys(value).length === 0;
    return false;
  }

  // Years, months and days between a birth date and an end date (today by default).
  function calculateAge(birthDateStr, endDateStr) {
    const start = new Date(String(birthDateStr).slice(0, 10) + 'T00:00:00Z');
    const end = endDateStr ? new Date(String(endDateStr).slice(0, 10) + 'T00:00:00Z') : new Date();
    let years = end.getUTCFullYear() - start.getUTCFullYear();
    let months = end.getUTCMonth() - start.getUTCMonth();
    let days = end.getUTCDate() - start.getUTCDate();
    if (days < 0) {
      months -= 1;
      days += new Date(Date.UTC(end.getUTCFullYear(), end.getUTCMonth(), 0)).getUTCDate();
    }
    if (months < 0) {
      years -= 1;
      months += 12;
    }
    return { years, months, days };
  }

  function calculateAgeString(birthDateStr, endDateStr) {
    const { years, months, days } = calculateAge(birthDateStr, endDateStr);
    if (years >= 2) return String(years).padStart(3, '0') + 'Y';
    if (years * 12 + months >= 1) return String(years * 12 + months).padStart(3, '0') + 'M';
    return String(days).padStart(3, '0') + 'D';
  }

  const ContentType = Object.freeze({
    CSS: 'text/css',
    CSV: 'text/csv',
    DICOM: 'application/dicom',
    FHIR_JSON: 'application/fhir+json',
    FORM_URL_ENCODED: 'application/x-www-form-urlencoded',
    HL7_V2: 'x-application/hl7-v2+er7',
    HTML: 'text/html',
    JAVASCRIPT: 'text/javascript',
    JSON: 'application/json',
    JSON_PATCH: 'application/json-patch+json',
    PDF: 'application/pdf',
    PNG: 'image/png',
    SVG: 'image/svg+xml',
    TEXT: 'text/plain',
    TYPESCRIPT: 'text/typescript',
    XML: 'text/xml',
  });

  const core = {
    allOk,
    accepted,
    badRequest,
    calculateAge,
    calculateAgeString,
    ContentType,
    created,
    createReference,
    deepClone,
    forbidden,
    formatFamilyName,
    formatGivenName,
    formatHumanName,
    getDisplayString,
    getExtension,
    getExtensionValue,
    getIdentifier,
    getReferenceString,
    gone,
    isEmpty,
    isOk,
    isString,
    isOperationOutcome,
    isReference,
    isResource,
    normalizeErrorString,
    normalizeOperationOutcome,
    notFound,
    notModified,
    OperationOutcomeError,
    operationOutcomeToString,
    resolveId,
    setIdentifier,
    unauthorized,
  };
  defineProperty(G, CORE_KEY, { value: core, writable: false, configurable: false, enumerable: false });

  function require(name) {
    name = String(name);
    if (name === '@medplum/core') return core;
    throw new Error("module '" + name + "' is not available in the sandbox");
  }

  // ----------------------------------------------------------------- client
  function toQueryString(query) {
    if (query === undefined || query === null) return '';
    if (typeof query === 'string') return query.startsWith('?') ? query.slice(1) : query;
    if (query instanceof URLSearchParams) return query.toString();
    const params = new URLSearchParams();
    if (Array.isArray(query)) {
      for (const pair of query) params.append(String(pair[0]), String(pair[1]));
    } else if (typeof query === 'object') {
      for (const key of Object.keys(query)) {
        const value = query[key];
        if (value === undefined) continue;
        if (Array.isArray(value)) for (const v of value) params.append(key, String(v));
        else params.append(key, String(value));
      }
    } else {
      throw new TypeError('a search query must be a string, an object, a URLSearchParams or an array of pairs');
    }
    return params.toString();
  }

  function withCountOne(query) {
    const params = new URLSearchParams(toQueryString(query));
    params.set('_count', '1');
    return params.toString();
  }

  function searchUrl(resourceType, query) {
    const qs = toQueryString(query);
    return qs ? resourceType + '?' + qs : resourceType;
  }

  function requireText(value, what) {
    if (value === undefined || value === null || value === '') {
      throw new OperationOutcomeError(badRequest('The "' + what + '" parameter cannot be null, undefined, or an empty string.'));
    }
    return String(value);
  }

  function urlString(url) {
    if (url instanceof URL) return url.href;
    return String(url);
  }

  function errorFor(status, body) {
    let out = body;
    if (!isOperationOutcome(out)) {
      out = outcome(status === 404 ? 'not-found' : 'error', 'error', status === 404 ? 'not-found' : 'processing', 'HTTP ' + status);
    }
    const text = issueText(out.issue && out.issue[0]);
    const err = new OperationOutcomeError(out);
    err.message = text === undefined ? 'HTTP ' + status : text;
    err.status = status;
    return err;
  }

  function send(method, url, body, headers) {
    const flat = [];
    if (headers) for (const key of Object.keys(headers)) flat.push(key, String(headers[key]));
    const payload = body === undefined ? undefined : jsonStringify(body);
    if (payload !== undefined && !(headers && 'Content-Type' in headers)) flat.push('Content-Type', 'application/fhir+json');
    const r = hostRequest(method, url, flat, payload);
    const status = r[0];
    const resBody = r[1];
    if (status >= 400) throw errorFor(status, resBody);
    return resBody === null ? undefined : resBody;
  }

  function asParameters(parameters) {
    if (isResource(parameters)) return parameters;
    const parameter = [];
    for (const name of Object.keys(parameters)) {
      const values = Array.isArray(parameters[name]) ? parameters[name] : [parameters[name]];
      for (const value of values) {
        if (value === undefined) continue;
        if (typeof value === 'boolean') parameter.push({ name, valueBoolean: value });
        else if (typeof value === 'number') parameter.push(Number.isInteger(value) ? { name, valueInteger: value } : { name, valueDecimal: value });
        else if (isResource(value)) parameter.push({ name, resource: value });
        else if (value !== null && typeof value === 'object') parameter.push(Object.assign({ name }, value));
        else parameter.push({ name, valueString: String(value) });
      }
    }
    return { resourceType: 'Parameters', parameter };
  }

  class MedplumClient {
    fhirUrl(...parts) {
      return parts
        .map((p) => String(p))
        .filter((p) => p !== '')
        .join('/');
    }
    fhirSearchUrl(resourceType, query) {
      return searchUrl(resourceType, query);
    }
    async get(url, options) {
      return send('GET', urlString(url), undefined, options && options.headers);
    }
    async post(url, body, contentType, options) {
      const headers = Object.assign({}, options && options.headers);
      if (contentType) headers['Content-Type'] = contentType;
      return send('POST', urlString(url), body, headers);
    }
    async put(url, body, contentType, options) {
      const headers = Object.assign({}, options && options.headers);
      if (contentType) headers['Content-Type'] = contentType;
      return send('PUT', urlString(url), body, headers);
    }
    async patch(url, operations, options) {
      const headers = Object.assign({ 'Content-Type': 'application/json-patch+json' }, options && options.headers);
      return send('PATCH', urlString(url), operations, headers);
    }
    async delete(url, options) {
      return send('DELETE', urlString(url), undefined, options && options.headers);
    }
    async readResource(resourceType, id, options) {
      requireText(resourceType, 'resourceType');
      id = requireText(id, 'id');
      return send('GET', resourceType + '/' + encodeURIComponent(id), undefined, options && options.headers);
    }
    async readReference(reference, options) {
      const ref = reference && reference.reference;
      if (typeof ref !== 'string' || ref === '') throw new OperationOutcomeError(badRequest('Missing reference'));
      const parts = ref.split('/');
      if (parts.length !== 2 || !parts[0] || !parts[1]) throw new OperationOutcomeError(badRequest('Invalid reference'));
      return this.readResource(parts[0], parts[1], options);
    }
    async readHistory(resourceType, id, options) {
      requireText(resourceType, 'resourceType');
      id = requireText(id, 'id');
      return send('GET', resourceType + '/' + encodeURIComponent(id) + '/_history', undefined, options && options.headers);
    }
    async readVersion(resourceType, id, vid, options) {
      requireText(resourceType, 'resourceType');
      id = requireText(id, 'id');
      vid = requireText(vid, 'vid');
      return send('GET', resourceType + '/' + encodeURIComponent(id) + '/_history/' + encodeURIComponent(vid), undefined, options && options.headers);
    }
    async readPatientEverything(id, options) {
      id = requireText(id, 'id');
      return send('GET', 'Patient/' + encodeURIComponent(id) + '/$everything', undefined, options && options.headers);
    }
    async search(resourceType, query, options) {
      requireText(resourceType, 'resourceType');
      return send('GET', searchUrl(resourceType, query), undefined, options && options.headers);
    }
    async searchOne(resourceType, query, options) {
      requireText(resourceType, 'resourceType');
      const bundle = send('GET', resourceType + '?' + withCountOne(query), undefined, options && options.headers);
      const entry = bundle && Array.isArray(bundle.entry) ? bundle.entry[0] : undefined;
      return entry ? entry.resource : undefined;
    }
    async searchResources(resourceType, query, options) {
      requireText(resourceType, 'resourceType');
      const bundle = send('GET', searchUrl(resourceType, query), undefined, options && options.headers);
      const entries = bundle && Array.isArray(bundle.entry) ? bundle.entry : [];
      const resources = [];
      for (const e of entries) if (e && e.resource !== undefined) resources.push(e.resource);
      defineProperty(resources, 'bundle', { value: bundle, enumerable: false, writable: true, configurable: true });
      return resources;
    }
    async createResource(resource, options) {
      if (!resource || typeof resource.resourceType !== 'string') {
        throw new OperationOutcomeError(badRequest('Missing resourceType'));
      }
      return send('POST', resource.resourceType, resource, options && options.headers);
    }
    async createResourceIfNoneExist(resource, query, options) {
      if (!resource || typeof resource.resourceType !== 'string') {
        throw new OperationOutcomeError(badRequest('Missing resourceType'));
      }
      const headers = Object.assign({}, options && options.headers, { 'If-None-Exist': toQueryString(query) });
      return send('POST', resource.resourceType, resource, headers);
    }
    async upsertResource(resource, query, options) {
      if (!resource || typeof resource.resourceType !== 'string') {
        throw new OperationOutcomeError(badRequest('Missing resourceType'));
      }
      return send('PUT', searchUrl(resource.resourceType, query), resource, options && options.headers);
    }
    async updateResource(resource, options) {
      if (!resource || typeof resource.resourceType !== 'string') {
        throw new OperationOutcomeError(badRequest('Missing resourceType'));
      }
      const id = requireText(resource.id, 'id');
      const result = send('PUT', resource.resourceType + '/' + encodeURIComponent(id), resource, options && options.headers);
      return result === undefined ? resource : result;
    }
    async patchResource(resourceType, id, operations, options) {
      requireText(resourceType, 'resourceType');
      id = requireText(id, 'id');
      const headers = Object.assign({ 'Content-Type': 'application/json-patch+json' }, options && options.headers);
      return send('PATCH', resourceType + '/' + encodeURIComponent(id), operations, headers);
    }
    async deleteResource(resourceType, id, options) {
      requireText(resourceType, 'resourceType');
      id = requireText(id, 'id');
      return send('DELETE', resourceType + '/' + encodeURIComponent(id), undefined, options && options.headers);
    }
    async validateResource(resource, options) {
      if (!resource || typeof resource.resourceType !== 'string') {
        throw new OperationOutcomeError(badRequest('Missing resourceType'));
      }
      return send('POST', resource.resourceType + '/$validate', resource, options && options.headers);
    }
    async executeBatch(bundle, options) {
      return send('POST', '', bundle, options && options.headers);
    }
    async executeOperation(code, options) {
      const o = options || {};
      let name = requireText(code, 'code');
      if (!name.startsWith('$')) name = '$' + name;
      const parts = [];
      if (o.resourceType) parts.push(String(o.resourceType));
      if (o.resourceType && o.id !== undefined && o.id !== null && o.id !== '') parts.push(encodeURIComponent(String(o.id)));
      parts.push(name);
      const url = parts.join('/');
      const method = String(o.method || 'POST').toUpperCase();
      if (method === 'GET' || method === 'DELETE') {
        let qs = '';
        if (o.parameters !== undefined) {
          if (isResource(o.parameters)) throw new OperationOutcomeError(badRequest('GET operations take plain parameters, not a resource'));
          qs = toQueryString(o.parameters);
        }
        return send(method, qs ? url + '?' + qs : url, undefined, o.headers);
      }
      return send(method, url, o.parameters === undefined ? undefined : asParameters(o.parameters), o.headers);
    }
  }
  // Exported by '@medplum/core' too (frozen with everything else at lockdown).
  core.MedplumClient = MedplumClient;


  // ----------------------------------------------------------------- runner
  function pickHandler(exp) {
    if (typeof exp === 'function') return exp;
    if (exp !== null && typeof exp === 'object') {
      if (typeof exp.handler === 'function') return exp.handler;
      const d = exp.default;
      if (typeof d === 'function') return d;
      if (d !== null && typeof d === 'object' && typeof d.handler === 'function') return d.handler;
    }
    return null;
  }

  function describe(e) {
    let out;
    try {
      if (isOperationOutcome(e)) out = e;
      else if (e !== null && typeof e === 'object' && isOperationOutcome(e.outcome)) out = e.outcome;
    } catch (x) {
      out = undefined;
    }
    let message;
    if (e instanceof Error) {
      const name = String(e.name || 'Error');
      const text = String(e.message);
      message = name === 'Error' || name === 'OperationOutcomeError' || !text ? text || name : name + ': ' + text;
    } else if (out !== undefined && out === e) {
      message = operationOutcomeToString(out);
    } else {
      message = formatValue(e);
    }
    let stack = '';
    try {
      if (e !== null && typeof e === 'object' && typeof e.stack === 'string') stack = e.stack;
    } catch (x) {
      stack = '';
    }
    let outJson;
    try {
      outJson = out === undefined ? undefined : jsonStringify(out);
    } catch (x) {
      outJson = undefined;
    }
    return [message, outJson, stack];
  }

  // --------------------------------------------------------------- lockdown
  const getPrototypeOf = Object.getPrototypeOf;
  const getOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ownKeys = Reflect.ownKeys;
  const freeze = Object.freeze;
  const isExtensible = Object.isExtensible;
  const deleteProperty = Reflect.deleteProperty;

  // Names that code commonly assigns on instances of built-ins.
  const OVERRIDABLE = ['constructor', 'toString', 'valueOf', 'toLocaleString', 'toJSON', 'name', 'message'];

  function isPrototype(o) {
    if (o === Object.prototype) return true;
    const d = getOwnPropertyDescriptor(o, 'constructor');
    return d !== undefined && typeof d.value === 'function' && d.value.prototype === o;
  }

  // Turns a writable data property of a prototype into an accessor whose setter
  // gives the instance an own property, as plain assignment would have done.
  function tame(proto, key) {
    const d = getOwnPropertyDescriptor(proto, key);
    if (d === undefined || !('value' in d) || !d.writable || !d.configurable) return;
    const value = d.value;
    defineProperty(proto, key, {
      get() {
        return value;
      },
      set(v) {
        if (this === proto || this === null || this === undefined) {
          throw new TypeError("Cannot assign to read only property '" + String(key) + "' of a sandbox built-in");
        }
        defineProperty(this, key, { value: v, writable: true, enumerable: true, configurable: true });
      },
      enumerable: d.enumerable,
      configurable: false,
    });
  }

  function harden(roots) {
    const seen = new Set();
    const stack = roots.slice();
    while (stack.length > 0) {
      const o = stack.pop();
      if (o === null || (typeof o !== 'object' && typeof o !== 'function') || seen.has(o)) continue;
      seen.add(o);
      if (isPrototype(o)) {
        const keys = o === Object.prototype ? ownKeys(o) : OVERRIDABLE;
        for (const key of keys) tame(o, key);
      }
      stack.push(getPrototypeOf(o));
      for (const key of ownKeys(o)) {
        const d = getOwnPropertyDescriptor(o, key);
        if ('value' in d) stack.push(d.value);
        else stack.push(d.get, d.set);
      }
      if (o !== G) freeze(o);
    }
  }

  function hidden() {
    const out = [];
    const tries = [
      () => getPrototypeOf(function* () {}),
      () => getPrototypeOf(async function () {}),
      () => getPrototypeOf(async function* () {}),
      () => getPrototypeOf([][Symbol.iterator]()),
      () => getPrototypeOf(new Map()[Symbol.iterator]()),
      () => getPrototypeOf(new Set()[Symbol.iterator]()),
      () => getPrototypeOf(''[Symbol.iterator]()),
      () => getPrototypeOf(''.matchAll(/x/g)),
      () => getPrototypeOf([].values().map((x) => x)),
      () => getPrototypeOf(Iterator.from({ next() { return { done: true }; } })),
      () => getOwnPropertyDescriptor(Function.prototype, 'caller').get,
      () => getOwnPropertyDescriptor((function () { 'use strict'; return arguments; })(), 'callee').get,
    ];
    for (const t of tries) {
      try {
        const v = t();
        if (v !== undefined) out.push(v);
      } catch (e) {
        // Not in this engine.
      }
    }
    return out;
  }

  function lockdown() {
    // Context-level state that the Error constructor's setters would change.
    defineProperty(Error, 'prepareStackTrace', { value: undefined, writable: false, enumerable: false, configurable: false });
    defineProperty(Error, 'stackTraceLimit', { value: 10, writable: false, enumerable: false, configurable: false });
    // Its callbacks would run during a later invocation.
    delete G.FinalizationRegistry;
    const roots = [G, MedplumClient, core, runner].concat(hidden());
    harden(roots);
    for (const key of ownKeys(G)) {
      const d = getOwnPropertyDescriptor(G, key);
      if ('value' in d) defineProperty(G, key, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
      else defineProperty(G, key, { get: d.get, set: d.set, enumerable: d.enumerable, configurable: false });
    }
  }

  // `event.target.resource`, parsed from its stored text on first read only.
  function attachResource(event, text) {
    if (typeof text !== 'string' || event === null || typeof event !== 'object') return;
    const target = event.target;
    if (target === null || typeof target !== 'object') return;
    let value;
    let parsed = false;
    defineProperty(target, 'resource', {
      get() {
        if (!parsed) {
          value = jsonParse(text);
          parsed = true;
        }
        return value;
      },
      set(v) {
        value = v;
        parsed = true;
      },
      enumerable: true,
      configurable: true,
    });
  }

  function newClient() {
    return new MedplumClient();
  }

  const runner = {
    cjs(wrapper, scriptName) {
      const module = { exports: {}, id: scriptName, filename: scriptName, loaded: false };
      const declared = wrapper.call(module.exports, module.exports, require, module, scriptName, '.');
      module.loaded = true;
      return pickHandler(module.exports) || (typeof declared === 'function' ? declared : null);
    },
    esm(namespace) {
      return pickHandler(namespace);
    },
    expr(fn) {
      return typeof fn === 'function' ? fn : null;
    },
    callHandler(handler, event, resource) {
      attachResource(event, resource);
      return handler(newClient(), event);
    },
    callFunction(fn, subject, event, resource) {
      const context = event !== null && typeof event === 'object' && !Array.isArray(event) ? event : {};
      attachResource(context, resource);
      context.client = newClient();
      return fn(subject, context);
    },
    describe,
    // Removes what the last invocation added to the global object; false when the
    // realm cannot be made clean again (it is then discarded).
    reset() {
      const keys = ownKeys(G);
      if (keys.length !== baseline.size) {
        for (const key of keys) {
          if (!baseline.has(key) && !deleteProperty(G, key)) return false;
        }
      }
      return getPrototypeOf(G) === baseProto && isExtensible(G);
    },
  };

  lockdown();
  const baseline = new Set(ownKeys(G));
  const baseProto = getPrototypeOf(G);
  return runner;
});
