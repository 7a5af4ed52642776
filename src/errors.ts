/**
 * Errors a user can cause carry their exit code, so the CLI prints one line and exits
 * without branching on message text.
 */
export const EXIT = {
  ok: 0,
  runtime: 1,
  usage: 2,
  skipped: 3,
  gate: 4,
  interrupted: 130,
} as const;

export class FinetuneError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode: number = EXIT.runtime, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.exitCode = exitCode;
  }
}

/** Bad flag, missing file or folder, unusable data: the user must change the command. */
export class UsageError extends FinetuneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT.usage, options);
  }
}

/** A file finetune needs (weights, bundle) is missing, corrupt, or of the wrong shape. */
export class ModelFileError extends FinetuneError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, EXIT.runtime, options);
  }
}

/** A quality threshold (`--min-accuracy` and friends) was missed. */
export class GateError extends FinetuneError {
  constructor(message: string) {
    super(message, EXIT.gate);
  }
}

/** The user asked to stop (SIGINT) or an AbortSignal fired. */
export class InterruptedError extends FinetuneError {
  constructor(message = 'interrupted') {
    super(message, EXIT.interrupted);
  }
}

/** The first line of an error's message: the line a user is shown of an error from a library. */
export function firstLine(err: unknown): string {
  return String(err instanceof Error ? err.message : err).split('\n')[0];
}
