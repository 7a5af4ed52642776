/**
 * Progress events: the library reports, the CLI renders (spinner, bar, plain line or JSON).
 * `status` follows transformers.js: initiate → progress* → done.
 */
export type ProgressEvent =
  | { status: 'initiate'; task: string; message: string; total?: number; unit?: string }
  | { status: 'progress'; task: string; current: number; total?: number; unit?: string; info?: Record<string, number | string> }
  | { status: 'done'; task: string; message?: string }
  | { status: 'warn'; task: string; message: string; path?: string };

export type OnProgress = (event: ProgressEvent) => void;

export const noProgress: OnProgress = () => {};
