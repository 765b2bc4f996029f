// What the SDK check scripts share: each check prints `ok NAME` or
// `FAIL NAME: reason`, and the last line is "N passed, M failed", which
// crates/test-support's `run_sdk_checks` reads.

/** Runs `[name, fn]` checks in turn; how many failed. */
export async function runChecks(checks) {
  let failed = 0;
  for (const [name, fn] of checks) {
    try {
      await fn();
      console.log(`ok ${name}`);
    } catch (err) {
      failed += 1;
      console.log(`FAIL ${name}: ${err?.stack ?? err}`);
    }
  }
  return failed;
}

/** Prints the last line and exits, 1 if a check failed. */
export function finish(total, failed) {
  console.log(`${total - failed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}

/** `condition()`'s first truthy value, asked every `pauseMs` for up to `withinSeconds`. */
export async function until(what, condition, withinSeconds = 15, pauseMs = 200) {
  const deadline = Date.now() + withinSeconds * 1000;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${withinSeconds} s`);
    await new Promise((resolve) => setTimeout(resolve, pauseMs));
  }
}
