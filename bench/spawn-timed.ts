import { spawn } from 'node:child_process';

export interface SpawnTimed {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Spawn to the first byte on stdout (the printed answer), seconds; exitS when nothing was printed. */
  firstOutputS: number;
  /** Spawn to process exit, seconds. */
  exitS: number;
}

/** Runs a command and times it from spawn, as a user at a shell would see it. */
export function spawnTimed(cmd: string, args: string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutS: number }): Promise<SpawnTimed> {
  return new Promise((resolve, reject) => {
    const start = performance.now();
    let first: number | undefined;
    let stdout = '';
    let stderr = '';
    const child = spawn(cmd, args, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      first ??= performance.now();
      stdout += chunk;
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutS * 1000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const end = performance.now();
      resolve({ code, stdout, stderr, firstOutputS: ((first ?? end) - start) / 1000, exitS: (end - start) / 1000 });
    });
  });
}
