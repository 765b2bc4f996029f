// summarize: a function in JavaScript, run by dapr-wasm's quickjs function
// (functions/quickjs), which finds it at /app/index.js: the functions file
// gives it this folder as the read-only directory /app.
//
// A JSON transform.
//
// Input: a JSON array of records. args: the field to group by, then
// optionally a numeric field to add up. Answer: one entry per group,
// largest first, with how many records it has (and their sum).
//
//   [{"city":"Lisbon","cups":2},{"city":"Porto","cups":1},{"city":"Lisbon","cups":3}]
//   with args ["city", "cups"] gives
//   [{"city":"Lisbon","count":2,"cups":5},{"city":"Porto","count":1,"cups":1}]
//
// Input it cannot use is refused with a thrown Error: the function exits
// with code 2 and the message becomes the HTTP answer's message.
function handle(input, args) {
  const [by, sum] = args;
  if (!by) throw new Error("no field to group by: give it in args");
  let records;
  try {
    records = JSON.parse(input);
  } catch (error) {
    throw new Error(`the input is not JSON: ${error.message}`);
  }
  if (!Array.isArray(records)) throw new Error("the input is not a JSON array");

  const groups = new Map();
  records.forEach((record, index) => {
    if (record === null || typeof record !== "object" || !(by in record)) {
      throw new Error(`record ${index} has no field "${by}"`);
    }
    const key = String(record[by]);
    const group = groups.get(key) ?? { [by]: key, count: 0 };
    group.count += 1;
    if (sum) {
      const value = Number(record[sum] ?? 0);
      if (!Number.isFinite(value)) throw new Error(`record ${index}: "${sum}" is not a number`);
      group[sum] = (group[sum] ?? 0) + value;
    }
    groups.set(key, group);
  });
  return [...groups.values()].sort((a, b) => b.count - a.count || (a[by] < b[by] ? -1 : 1));
}
