import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as tf from '../tf.ts';
import { FinetuneError } from '../errors.ts';
import { MANIFEST_FILE, type Manifest } from './manifest.ts';

async function writeDurably(file: string, data: string | Uint8Array): Promise<void> {
  const handle = await open(file, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function syncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename is still atomic.
  } finally {
    await handle.close();
  }
}

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
export async function saveBundle(dir: string, head: tf.LayersModel, manifest: Omit<Manifest, 'head'>): Promise<string> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (err) {
    throw new FinetuneError(`cannot create model folder ${dir}: ${(err as Error).message}; choose another --out`, 1, { cause: err });
  }
  const old = await previousHead(dir);
  const headDir = `head-${Date.now().toString(36)}-${process.pid}-${randomBytes(4).toString('hex')}`;
  const headPath = path.join(dir, headDir);
  await mkdir(headPath);
  await writeLayersModel(headPath, head);
  const full: Manifest = { ...manifest, head: `${headDir}/model.json` } as Manifest;
  const tmp = path.join(dir, `.${MANIFEST_FILE}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  await writeDurably(tmp, JSON.stringify(full, null, 2) + '\n');
  await rename(tmp, path.join(dir, MANIFEST_FILE));
  await syncDir(dir);
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
 * Heads and temporary manifests left by a killed save. Only those of processes that no longer
 * run are removed: a live writer may still be filling its own head folder.
 */
async function removeLeftovers(dir: string, current: string): Promise<void> {
  let referenced = current;
  try {
    referenced = path.dirname((JSON.parse(await readFile(path.join(dir, MANIFEST_FILE), 'utf8')) as Manifest).head);
  } catch {
    return;
  }
  for (const name of await readdir(dir)) {
    const match = /^head-[0-9a-z]+-(\d+)-[0-9a-f]+$/.exec(name) ?? /^\.finetune\.json\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
    if (!match || name === referenced || name === current) continue;
    if (!processAlive(Number(match[1]))) await rm(path.join(dir, name), { recursive: true, force: true });
  }
}

/** Remembers the bundle trained last, predict's default --model. */
export async function rememberLastModel(file: string, dir: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, path.resolve(dir) + '\n');
  await rename(tmp, file);
}
