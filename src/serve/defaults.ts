/** The server's defaults, defined once: the CLI's help shows these (a module of its own, so `--help` loads no server code). */
export const SERVE_DEFAULTS = {
  port: 8080,
  host: '127.0.0.1',
  maxBatch: 16,
  maxWaitMs: 5,
  maxQueue: 256,
  maxBody: 20_000_000,
  maxFiles: 64,
  maxPixels: 40_000_000,
  timeoutMs: 30_000,
  drainMs: 10_000,
};
