import { readdirSync, statSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { runPart } from './child.ts';
import { CLI, DARKNET_DIR, ROOT, sharedHas } from './paths.ts';
import type { PredictProfile } from './predict-profile.ts';
import { spawnTimed, type SpawnTimed } from './spawn-timed.ts';
import { log, round } from './timing.ts';

export interface ColdRun {
  /** Best of the timed runs, spawn → first line on stdout (the answer), seconds. */
  answerS: number;
  /** Best spawn → exit, seconds. */
  exitS: number;
  runs: { answerS: number; exitS: number }[];
}

export interface StartupResult {
  /** Whether bin/finetune.js ran the compiled dist/ (up to date with src/) or src/ through tsx. */
  cliRuns: 'dist' | 'tsx';
  help: ColdRun;
  darknet: ColdRun & { backbone: string; trainS: number; profile?: PredictProfile };
  vgg16: ColdRun & { trainS: number; profile?: PredictProfile };
}

function newestIn(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestIn(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** bin/finetune.js's own rule: dist/.stamp newer than everything in src/. */
function cliRunsFrom(): 'dist' | 'tsx' {
  try {
    return statSync(path.join(ROOT, 'dist', '.stamp')).mtimeMs >= newestIn(path.join(ROOT, 'src')) ? 'dist' : 'tsx';
  } catch {
    return 'tsx';
  }
}

function check(r: SpawnTimed, what: string): SpawnTimed {
  if (r.code !== 0) throw new Error(`${what} exited with ${r.code}: ${(r.stderr.trim() || r.stdout.trim()).split('\n').pop()}`);
  return r;
}

async function cold(args: string[], env: (i: number) => NodeJS.ProcessEnv, runs: number, what: string): Promise<ColdRun> {
  const all: { answerS: number; exitS: number }[] = [];
  for (let i = 0; i <= runs; i++) {
    const r = check(await spawnTimed(process.execPath, [CLI, ...args], { cwd: ROOT, env: env(i), timeoutS: 300 }), what);
    if (i > 0) all.push({ answerS: round(r.firstOutputS), exitS: round(r.exitS) });
  }
  const best = { answerS: Math.min(...all.map((r) => r.answerS)), exitS: Math.min(...all.map((r) => r.exitS)) };
  log(`${what}: answer after ${best.answerS} s, exit after ${best.exitS} s (best of ${runs})`);
  return { ...best, runs: all };
}

/**
 * `finetune --help`, and `finetune predict IMG --model M` from a cold process, for a model on
 * darknet-tiny and one on VGG16 (random weights written where the registry looks). Each
 * predict gets an empty feature cache, so the backbone really runs.
 */
export async function benchStartup(opts: { scratch: string; trainImages: string[]; predictImage: string; runs: number }): Promise<StartupResult> {
  const home = path.join(opts.scratch, 'home');
  const data = path.join(opts.scratch, 'train-data');
  for (const [i, file] of opts.trainImages.entries()) {
    const dir = path.join(data, i % 2 === 0 ? 'a' : 'b');
    await mkdir(dir, { recursive: true });
    await copyFile(file, path.join(dir, `${i}${path.extname(file)}`));
  }
  const haveDarknet = sharedHas(DARKNET_DIR);
  const tinyFolder = haveDarknet ? undefined : path.join(opts.scratch, 'tiny-backbone');
  await runPart('predict-setup', { home, tinyFolder }, { timeoutS: 300 });
  const env: NodeJS.ProcessEnv = { FINETUNE_HOME: home, FINETUNE_OFFLINE: '1', FINETUNE_CACHE: path.join(opts.scratch, 'cache-train'), NO_COLOR: '1' };
  const backbone = tinyFolder ?? DARKNET_DIR;

  const train = async (name: string, extra: string[]) => {
    const out = path.join(home, `model-${name}`);
    const r = check(await spawnTimed(process.execPath, [CLI, 'train', data, ...extra, '--epochs', '2', '--out', out, '--quiet'], { cwd: ROOT, env, timeoutS: 600 }), `train ${name}`);
    log(`trained a ${name} model on ${opts.trainImages.length} images in ${r.exitS.toFixed(1)} s`);
    return { out, trainS: round(r.exitS, 2) };
  };
  const dark = await train('darknet', ['--backbone', backbone]);
  const vgg = await train('vgg16', ['--backbone', 'vgg16']);

  const freshCache = (tag: string) => (i: number) => ({ ...env, FINETUNE_CACHE: path.join(opts.scratch, `cache-${tag}-${i}`) });
  const help = await cold(['--help'], () => env, opts.runs, 'finetune --help');
  const darknet = await cold(['predict', opts.predictImage, '--model', dark.out], freshCache('darknet'), opts.runs, 'predict (darknet-tiny)');
  const vgg16 = await cold(['predict', opts.predictImage, '--model', vgg.out], freshCache('vgg16'), opts.runs, 'predict (vgg16)');

  const profile = (model: string, tag: string) =>
    runPart<PredictProfile>('predict-profile', { model, image: opts.predictImage }, { timeoutS: 300, env: freshCache(`profile-${tag}`)(0) }).catch((err: Error) => {
      log(`predict profile (${tag}) failed: ${err.message}`);
      return undefined;
    });
  return {
    cliRuns: cliRunsFrom(),
    help,
    darknet: { ...darknet, backbone: haveDarknet ? 'darknet-tiny (../shared)' : 'small 4-conv stand-in (../shared absent)', trainS: dark.trainS, profile: await profile(dark.out, 'darknet') },
    vgg16: { ...vgg16, trainS: vgg.trainS, profile: await profile(vgg.out, 'vgg16') },
  };
}
