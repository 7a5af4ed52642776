import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import { EXIT, FinetuneError } from '../errors.ts';
import { syncDir, writeDurably, writeFileAtomic } from '../fs/atomic.ts';
import { reasonOf } from '../fs/reasons.ts';
import { BACKBONE_ONNX_FILE, MANIFEST_FILE, type Manifest } from './manifest.ts';

async function previousHead(dir: string): Promise<string | undefined> {
  try {
    const manifest = JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8')) as Partial<Manifest>;
    return typeof manifest.head === 'string' ? path.dirname(manifest.head) : undefined;
  } catch {
    return undefined;
  }
}

/** Writes a tfjs layers model folder (model.json + weights.bin), each file fsync'd. */
export async function writeLayersModel(dir: string, model: tf.LayersModel): Promise<void> {
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      const weightsFile = 'weights.bin';
      await writeDurably(path.join(dir, weightsFile), new Uint8Array(artifacts.weightData as ArrayBuffer));
      const modelJson = {
        format: 'layers-model',
        generatedBy: 'finetune',
        modelTopology: artifacts.modelTopology,
        weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs }],
      };
      await writeDurably(path.join(dir, 'model.json'), JSON.stringify(modelJson));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  await syncDir(dir);
}

/**
 * Writes a bundle so that no moment leaves a broken model at `dir`: the head goes into a new
 * folder `head-<id>/`, and only then `finetune.json`, which names it, replaces the old one by
 * an atomic rename. A kill before that rename leaves the previous model whole; two writers
 * each point the manifest at their own complete head, never at a mix.
 */
export async function saveBundle(dir: string, head: tf.LayersModel, manifest: Omit<Manifest, 'head'>, opts: { backboneOnnx?: Uint8Array } = {}): Promise<string> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new FinetuneError(`cannot create model folder ${dir}: ${reasonOf(err)}; choose another --out`, EXIT.runtime, { cause: err });
  }
  const old = await previousHead(dir);
  const headDir = `head-${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const headPath = path.join(dir, headDir);
  const tmp = path.join(dir, `.${MANIFEST_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let renamed = false;
  try {
    await mkdir(headPath);
    await writeLayersModel(headPath, head);
    // The trained backbone lives in the head's folder, so the manifest's rename commits both at once.
    let backbones = manifest.backbones;
    if (opts.backboneOnnx) {
      await writeDurably(path.join(headPath, BACKBONE_ONNX_FILE), opts.backboneOnnx);
      await syncDir(headPath);
      const sha256 = createHash('sha256').update(opts.backboneOnnx).digest('hex');
      backbones = backbones.map((b, i) => (i === 0 ? { ...b, onnx: { file: `${headDir}/${BACKBONE_ONNX_FILE}`, sha256 } } : b));
    }
    const full: Manifest = { ...manifest, backbones, head: `${headDir}/model.json` } as Manifest;
    await writeDurably(tmp, JSON.stringify(full, null, 2) + '\n');
    await rename(tmp, path.join(dir, MANIFEST_FILE));
    renamed = true;
    await syncDir(dir);
  } catch (err) {
    if (!renamed) {
      // What this save wrote goes, so that a retry after freeing space has the space back.
      await rm(headPath, { recursive: true, force: true }).catch(() => undefined);
      await rm(tmp, { force: true }).catch(() => undefined);
      await removeLeftovers(dir, old).catch(() => undefined);
      const kept = old ? '; the previous model there is unchanged' : '';
      throw new FinetuneError(`cannot save the model in ${dir}: ${reasonOf(err)}${kept}; free space or choose another --out`, EXIT.runtime, { cause: err });
    }
    throw err;
  }
  if (old && old !== headDir && /^head-[\w-]+$/.test(old)) await rm(path.join(dir, old), { recursive: true, force: true });
  await removeLeftovers(dir, headDir);
  return dir;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A save writes its head in seconds; a head folder untouched for this long belongs to no live
 * save, even when its pid is alive again (reused, or a process in another container).
 */
const ORPHAN_AGE_MS = 10 * 60 * 1000;

/**
 * Heads and temporary manifests left by a killed or failed save. Those of processes that still
 * run and that were written to recently are kept: a live writer may still be filling its own
 * head folder. `keep` is the head the manifest names (and this save's own).
 */
async function removeLeftovers(dir: string, keep: string | undefined): Promise<void> {
  const referenced = await previousHead(dir);
  for (const name of await readdir(dir)) {
    const match = /^head-[0-9a-z]+-(\d+)-[0-9a-f]+$/.exec(name) ?? /^\.finetune\.json\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
    if (!match || name === referenced || name === keep) continue;
    const full = path.join(dir, name);
    const age = Date.now() - ((await stat(full).catch(() => undefined))?.mtimeMs ?? 0);
    if (!processAlive(Number(match[1])) || age > ORPHAN_AGE_MS) await rm(full, { recursive: true, force: true });
  }
}

/** Remembers the bundle trained last, predict's default --model. */
export async function rememberLastModel(file: string, dir: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFileAtomic(file, path.resolve(dir) + '\n');
}
