/** Runs a command's main function: errors print as one line (set DEBUG=1 for the stack) and exit 1. Kept free of
 * heavy imports so light commands (report) start fast. */
export function runMain(main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      const msg = e instanceof Error ? e.message : String(e);
      console.error(`error: ${msg}`);
      if (process.env.DEBUG && e instanceof Error) console.error(e.stack);
      process.exit(1);
    },
  );
}
