import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './paths.ts';

/**
 * Runs one bench part in its own Node process (bench/part.ts), so thread pools, tfjs
 * backends and peak memory of one part never colour another's figures. The child writes
 * its result as JSON to a file; its progress lines pass through on stderr.
 */
export function runPart<T>(name: string, options: unknown, limits: { timeoutS: number; env?: NodeJS.ProcessEnv }): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'finetune-bench-part-'));
  const resultFile = path.join(dir, 'result.json');
  // Options go through a file: a long command line (300 paths) makes onnxruntime's session
  // creation crash for some graphs (a segfault deep in libonnxruntime with darknet-tiny once argv passes ~15 KB), and it is no place for data.
  const optionsFile = path.join(dir, 'options.json');
  writeFileSync(optionsFile, JSON.stringify(options));
  return new Promise<T>((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench', 'part.ts'), name, optionsFile, resultFile], {
      cwd: ROOT,
      env: { ...process.env, ...limits.env },
      // stdout is dropped: tfjs prints adverts there.
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr = (stderr + chunk).slice(-2000);
      // A crash inside minified code (tfjs-wasm's glue) prints a line of 100 KB: keep the start.
      process.stderr.write(chunk.replace(/[^\n]{400,}/g, (line) => `${line.slice(0, 300)}… [${line.length} characters]`));
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), limits.timeoutS * 1000);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) {
        try {
          resolve(JSON.parse(readFileSync(resultFile, 'utf8')) as T);
          return;
        } catch {
          // no result: reported below
        }
      }
      const why = signal === 'SIGKILL' ? `took over ${limits.timeoutS} s` : `exited with ${code ?? signal}`;
      const lastLine = stderr.trim().split('\n').pop();
      reject(new Error(`bench part ${name} ${why}${lastLine ? `: ${lastLine.slice(0, 300)}` : ''}`));
    });
  }).finally(() => rmSync(dir, { recursive: true, force: true }));
}
