// csv2json: a dapr-wasm function in AssemblyScript (WASI preview 1, through
// @assemblyscript/wasi-shim).
//
// Reads CSV on stdin (a header line, then rows; fields separated by commas,
// optionally "quoted", with "" for a quote inside) and writes a JSON array
// of objects on stdout, one per row, keyed by the header:
//
//   name,cups        [{"name":"ana","cups":"2"},{"name":"bo","cups":"3"}]
//   ana,2
//   bo,3
//
// Exit codes (mapped to statuses by the functions file): 1 when a row has
// another number of fields than the header, or a quote is not closed;
// 2 when the input is not UTF-8. The reason goes to stderr.

function readAll(): ArrayBuffer {
  let size = 0;
  let buffer = new ArrayBuffer(65536);
  while (true) {
    if (size == buffer.byteLength) {
      const bigger = new ArrayBuffer(buffer.byteLength * 2);
      memory.copy(changetype<usize>(bigger), changetype<usize>(buffer), size);
      buffer = bigger;
    }
    const read = process.stdin.read(buffer, size);
    if (read <= 0) break;
    size += read;
  }
  return buffer.slice(0, size);
}

function fail(code: i32, reason: string): void {
  process.stderr.write(reason + "\n");
  process.exit(code);
}

function jsonString(text: string): string {
  let out = '"';
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c == 0x22) out += '\\"';
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else if (c < 0x20) out += "\\u00" + (c < 0x10 ? "0" : "") + c.toString(16);
    else out += String.fromCharCode(c);
  }
  return out + '"';
}

// Splits the CSV into rows of fields.
function parse(text: string): Array<Array<string>> {
  const rows = new Array<Array<string>>();
  let row = new Array<string>();
  let field = "";
  let quoted = false;
  let i = 0;
  while (i < text.length) {
    const c = text.charAt(i);
    if (quoted) {
      if (c == '"' && i + 1 < text.length && text.charAt(i + 1) == '"') {
        field += '"';
        i += 2;
        continue;
      }
      if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"' && field.length == 0) {
      quoted = true;
    } else if (c == ",") {
      row.push(field);
      field = "";
    } else if (c == "\n" || c == "\r") {
      if (c == "\r" && i + 1 < text.length && text.charAt(i + 1) == "\n") i++;
      row.push(field);
      field = "";
      if (!(row.length == 1 && row[0].length == 0)) rows.push(row);
      row = new Array<string>();
    } else {
      field += c;
    }
    i++;
  }
  if (quoted) fail(1, "a quoted field is not closed");
  if (field.length > 0 || row.length > 0) {
    row.push(field);
    rows.push(row);
  }
  return rows;
}

function main(): void {
  const input = readAll();
  const text = String.UTF8.decode(input);
  if (String.UTF8.byteLength(text) != input.byteLength) fail(2, "the input is not UTF-8 text");
  const rows = parse(text);
  if (rows.length == 0) {
    process.stdout.write("[]\n");
    return;
  }
  const header = rows[0];
  let out = "[";
  for (let r = 1; r < rows.length; r++) {
    const row = rows[r];
    if (row.length != header.length) {
      fail(1, "row " + r.toString() + " has " + row.length.toString() + " fields; the header has " + header.length.toString());
    }
    if (r > 1) out += ",";
    out += "{";
    for (let f = 0; f < header.length; f++) {
      if (f > 0) out += ",";
      out += jsonString(header[f]) + ":" + jsonString(row[f]);
    }
    out += "}";
  }
  process.stdout.write(out + "]\n");
}
main();
