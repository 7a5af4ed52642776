import { readFileSync, writeFileSync } from 'node:fs';

/**
 * Child entry: `node --import tsx bench/part.ts <name> <options.json> [<result.json>]`; the
 * result goes to a file because tfjs may print adverts on stdout. The part's module
 * is imported only after the process has started, so a part that profiles start-up sees
 * its own imports.
 */
const PARTS: Record<string, () => Promise<{ run(options: never): Promise<unknown> }>> = {
  gemm: () => import('./gemm.ts'),
  'vgg-onnx': () => import('./vgg-onnx.ts'),
  'vgg-wasm': () => import('./vgg-wasm.ts'),
  'vgg-flops': () => import('./flops.ts'),
  'rss-extract': () => import('./rss-extract.ts'),
  cache: () => import('./cache.ts'),
  head: () => import('./head.ts'),
  finetune: () => import('./finetune.ts'),
  'onnx-file': () => import('./onnx-file.ts'),
  'predict-setup': () => import('./predict-setup.ts'),
  'predict-profile': () => import('./predict-profile.ts'),
};

const [name, optionsFile, resultFile] = process.argv.slice(2);
const load = PARTS[name];
if (!load) {
  process.stderr.write(`bench/part.ts: unknown part "${name}"; parts: ${Object.keys(PARTS).join(', ')}\n`);
  process.exitCode = 2;
} else {
  const part = await load();
  const result = await part.run(JSON.parse(optionsFile ? readFileSync(optionsFile, 'utf8') : '{}') as never);
  const text = JSON.stringify(result);
  if (resultFile) writeFileSync(resultFile, text);
  else process.stdout.write(`${text}\n`);
  // ORT and tfjs keep worker threads alive; the result is out, so leave now.
  process.exit(0);
}
