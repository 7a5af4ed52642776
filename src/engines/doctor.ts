import { execFile } from 'node:child_process';
import { lstat, readdir, readFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { featureCacheDir, finetuneHome, kerasModelsDir, lastModelFile, modelsDir } from '../paths.ts';
import { probeWritable } from '../fs/reasons.ts';
import { packageVersion } from '../package.ts';

/**
 * `finetune doctor`: what this machine can run and why, for the user fighting CUDA versions.
 * Every probe is caught: a library that cannot load is a finding in the report, never a throw.
 */

/** What each GPU route needs from the dynamic loader (their own documentation's versions). */
export const GPU_ROUTES = {
  'tfjs-node-gpu': { cuda: '11.2', cudnn: '8.1', libraries: ['libcudart.so.11.0', 'libcudnn.so.8'] },
  'onnxruntime-cuda': { cuda: '12', cudnn: '9', libraries: ['libcudart.so.12', 'libcublasLt.so.12', 'libcudnn.so.9'] },
} as const;

export const INSTALL = {
  'tfjs-node-gpu': 'npm install @tensorflow/tfjs-node-gpu@4.22.0   # needs CUDA 11.2 + cuDNN 8.1 and network: its install script downloads libtensorflow',
  'onnxruntime-cuda': 'ONNXRUNTIME_NODE_INSTALL=cuda12 npm rebuild onnxruntime-node --foreground-scripts   # with "onnxruntime-node": true in package.json allowScripts; needs CUDA 12 + cuDNN 9',
} as const;

export interface BackendStatus {
  name: 'node-gpu' | 'node' | 'wasm' | 'cpu';
  loads: boolean;
  /** Why it does not load, in the loader's words. */
  error?: string;
}

export interface PathStatus {
  key: 'home' | 'weights' | 'keras' | 'cache' | 'lastModel';
  what: string;
  path: string;
  exists: boolean;
  /** Bytes of the files below it (0 when absent). */
  bytes: number;
  /** Whether finetune can write there (the nearest existing folder above, when it is absent). */
  writable: boolean;
}

export interface Problem {
  problem: string;
  fix: string;
}

export interface DoctorReport {
  node: string;
  platform: string;
  cpus: number;
  packages: Record<string, string | null>;
  onnx: { loads: boolean; error?: string; providers: string[]; cudaProvider: boolean };
  tfjs: BackendStatus[];
  auto: { engine: 'onnx' | 'tfjs'; backend: string | null; reason: string };
  gpu: { visible: boolean; how: string; devices: string[] };
  cudaLibraries: { name: string; path: string }[];
  routes: { route: keyof typeof GPU_ROUTES; cuda: string; cudnn: string; missing: string[] }[];
  paths: PathStatus[];
  sharp: { loads: boolean; error?: string; libvips: string | null; maxInputPixels: number | null };
  problems: Problem[];
}

/** The probes, replaceable so tests can make any of them fail. */
export interface DoctorProbes {
  onnxruntime(): Promise<{ providers: string[]; cudaProvider: boolean }>;
  tfjsBackend(name: BackendStatus['name']): Promise<void>;
  autoBackend(): Promise<string>;
  sharp(): Promise<{ libvips: string; maxInputPixels: number }>;
  /** stdout of a command, or undefined when it is missing or fails. */
  run(command: string, args: string[]): Promise<string | undefined>;
  packageVersion(name: string): Promise<string | null>;
}

const message = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') return 'not installed';
  return (err instanceof Error ? err.message : String(err)).split('\n')[0];
};

export const realProbes: DoctorProbes = {
  async onnxruntime() {
    const ort = await import('onnxruntime-node');
    const { cudaAvailable } = await import('./onnx.ts');
    return { providers: ort.listSupportedBackends().map((b) => b.name), cudaProvider: cudaAvailable() };
  },
  async tfjsBackend(name) {
    // tfjs-core itself, not ./tf.ts: a dynamic import of that star re-export makes the bundler
    // wrap it lazily, and every static `tf.x` elsewhere in dist/ then reads undefined.
    const tf = await import('@tensorflow/tfjs-core');
    await import('@tensorflow/tfjs-backend-cpu');
    if (name === 'node-gpu' || name === 'node') {
      await import(name === 'node-gpu' ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node');
      if (!tf.findBackend('tensorflow')) throw new Error('loaded, but registered no tensorflow backend');
    } else if (name === 'wasm') {
      await import('@tensorflow/tfjs-backend-wasm');
      if (!(await tf.setBackend('wasm'))) throw new Error('the wasm backend did not initialise');
    } else if (!(await tf.setBackend('cpu'))) throw new Error('the cpu backend did not initialise');
  },
  async autoBackend() {
    const { initBackend } = await import('./backend.ts');
    return initBackend('auto');
  },
  async sharp() {
    const sharp = (await import('sharp')).default;
    const { MAX_INPUT_PIXELS } = await import('../data/image.ts');
    return { libvips: sharp.versions.vips, maxInputPixels: MAX_INPUT_PIXELS };
  },
  run(command, args) {
    return new Promise((resolve) => {
      execFile(command, args, { timeout: 5000, encoding: 'utf8' }, (err, stdout) => resolve(err ? undefined : stdout));
    });
  },
  async packageVersion(name) {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    // Read from the folder itself: some packages' exports maps hide their package.json.
    for (const dir of require.resolve.paths(name) ?? []) {
      const text = await readFile(path.join(dir, name, 'package.json'), 'utf8').catch(() => undefined);
      if (text) return (JSON.parse(text) as { version: string }).version;
    }
    return null;
  },
};

const PACKAGES = ['onnxruntime-node', '@tensorflow/tfjs', '@tensorflow/tfjs-backend-wasm', '@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu', 'sharp'];

async function settle<T>(work: () => Promise<T>): Promise<{ value?: T; error?: string }> {
  try {
    return { value: await work() };
  } catch (err) {
    return { error: message(err) };
  }
}

export async function doctor(opts: { probes?: Partial<DoctorProbes> } = {}): Promise<DoctorReport> {
  const probes: DoctorProbes = { ...realProbes, ...opts.probes };
  const problems: Problem[] = [];

  const packages: Record<string, string | null> = { finetune: packageVersion() };
  for (const name of PACKAGES) packages[name] = (await settle(() => probes.packageVersion(name))).value ?? null;

  const ort = await settle(() => probes.onnxruntime());
  const onnx = { loads: ort.value !== undefined, ...(ort.error && { error: ort.error }), providers: ort.value?.providers ?? [], cudaProvider: ort.value?.cudaProvider ?? false };
  if (!onnx.loads) problems.push({ problem: `onnxruntime-node does not load: ${ort.error}`, fix: 'reinstall it (npm ci); meanwhile --engine tfjs runs the backbone on tfjs (about 10× slower on a CPU)' });

  const tfjs: BackendStatus[] = [];
  for (const name of ['node-gpu', 'node', 'wasm', 'cpu'] as const) {
    const r = await settle(() => probes.tfjsBackend(name));
    tfjs.push({ name, loads: r.error === undefined, ...(r.error && { error: r.error }) });
  }
  const auto = await settle(() => probes.autoBackend());
  const backend = auto.value ?? null;
  if (!backend) problems.push({ problem: `no tfjs backend loads: ${auto.error}`, fix: 'reinstall the dependencies (npm ci): heads are trained on tfjs' });
  const wasm = tfjs.find((b) => b.name === 'wasm')!;
  if (!wasm.loads) problems.push({ problem: `the tfjs wasm backend does not load: ${wasm.error}`, fix: 'reinstall the dependencies (npm ci); heads train on the slower cpu backend meanwhile' });

  const gpu = await findGpu(probes);
  const cudaLibraries = await findCudaLibraries(probes);
  const found = new Set(cudaLibraries.map((l) => l.name));
  const routes = (Object.entries(GPU_ROUTES) as [keyof typeof GPU_ROUTES, (typeof GPU_ROUTES)[keyof typeof GPU_ROUTES]][]).map(([route, need]) => ({
    route,
    cuda: need.cuda,
    cudnn: need.cudnn,
    missing: need.libraries.filter((lib) => !found.has(lib)),
  }));
  const nodeGpu = tfjs.find((b) => b.name === 'node-gpu')!;
  const engine = backend === 'node-gpu' ? 'tfjs' : onnx.loads ? 'onnx' : 'tfjs';
  const reason =
    backend === 'node-gpu'
      ? 'tfjs-node-gpu loads, so the backbone runs on the GPU through tfjs'
      : onnx.loads
        ? `tfjs-node-gpu ${packages['@tensorflow/tfjs-node-gpu'] ? 'does not load' : 'is not installed'}, so the backbone runs on onnxruntime (${onnx.cudaProvider ? 'CUDA provider available with --device gpu' : 'CPU; its CUDA provider is not installed'})`
        : `onnxruntime does not load, so the backbone runs on tfjs-${backend ?? 'none'}`;

  if (gpu.visible) {
    const tfjsRoute = routes.find((r) => r.route === 'tfjs-node-gpu')!;
    const ortRoute = routes.find((r) => r.route === 'onnxruntime-cuda')!;
    if (!nodeGpu.loads) {
      const missing = tfjsRoute.missing.length > 0 ? `; the loader lacks ${tfjsRoute.missing.join(', ')} (CUDA ${tfjsRoute.cuda}, cuDNN ${tfjsRoute.cudnn})` : '';
      problems.push({
        problem: `a GPU is visible but tfjs-node-gpu ${packages['@tensorflow/tfjs-node-gpu'] ? `does not load (${nodeGpu.error})` : 'is not installed'}${missing}`,
        fix: `${INSTALL['tfjs-node-gpu']}; or use onnxruntime's CUDA provider instead`,
      });
    }
    if (!onnx.cudaProvider) {
      const missing = ortRoute.missing.length > 0 ? `; the loader also lacks ${ortRoute.missing.join(', ')} (CUDA ${ortRoute.cuda}, cuDNN ${ortRoute.cudnn})` : '';
      problems.push({ problem: `a GPU is visible but onnxruntime-node has no CUDA provider library${missing}`, fix: INSTALL['onnxruntime-cuda'] });
    } else if (ortRoute.missing.length > 0) {
      problems.push({ problem: `onnxruntime's CUDA provider is installed but the loader lacks ${ortRoute.missing.join(', ')}`, fix: `install CUDA ${ortRoute.cuda} and cuDNN ${ortRoute.cudnn} (or add their lib folders to LD_LIBRARY_PATH)` });
    }
  }

  const paths = await Promise.all([
    pathStatus('home', 'finetune home ($FINETUNE_HOME)', finetuneHome()),
    pathStatus('weights', 'downloaded and imported weights', modelsDir()),
    pathStatus('keras', "Keras's weights (read, never written)", kerasModelsDir()),
    pathStatus('cache', 'feature cache ($FINETUNE_CACHE)', featureCacheDir()),
  ]);
  for (const p of paths) {
    if (!p.writable && p.key !== 'keras') problems.push({ problem: `${p.what} ${p.path} is not writable`, fix: `make it writable, or point ${p.key === 'cache' ? 'FINETUNE_CACHE' : 'FINETUNE_HOME'} at a folder you can write` });
  }
  const last = (await readFile(lastModelFile(), 'utf8').catch(() => '')).trim();
  if (last) {
    const status = await pathStatus('lastModel', 'the model trained last', path.resolve(last));
    paths.push(status);
    if (!status.exists) problems.push({ problem: `the model trained last, ${last}, is gone`, fix: 'train again, or give predict and evaluate --model DIR' });
  }

  const sharpProbe = await settle(() => probes.sharp());
  const sharp = { loads: sharpProbe.value !== undefined, ...(sharpProbe.error && { error: sharpProbe.error }), libvips: sharpProbe.value?.libvips ?? null, maxInputPixels: sharpProbe.value?.maxInputPixels ?? null };
  if (!sharp.loads) problems.push({ problem: `sharp does not load: ${sharp.error}`, fix: 'reinstall it for this platform (npm ci, or npm install --os=linux --cpu=x64 sharp)' });

  return {
    node: process.versions.node,
    platform: `${process.platform}-${process.arch}`,
    cpus: os.availableParallelism(),
    packages,
    onnx,
    tfjs,
    auto: { engine, backend, reason },
    gpu,
    cudaLibraries,
    routes,
    paths,
    sharp,
    problems,
  };
}

async function findGpu(probes: DoctorProbes): Promise<DoctorReport['gpu']> {
  const smi = await settle(() => probes.run('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader']));
  const devices = (smi.value ?? '').split('\n').map((l) => l.trim()).filter(Boolean);
  if (devices.length > 0) return { visible: true, how: 'nvidia-smi', devices };
  const proc = await readdir('/proc/driver/nvidia/gpus').catch(() => []);
  if (proc.length > 0) return { visible: true, how: '/proc/driver/nvidia/gpus', devices: proc };
  return { visible: false, how: 'no GPU: nvidia-smi finds none (or is missing) and /proc/driver/nvidia does not exist', devices: [] };
}

const CUDA_LIBRARY = /^lib(cudart|cudnn|cublas|cublasLt|cufft|curand|cusolver|cusparse)\.so(\.\d+)*$/;

/** CUDA and cuDNN libraries the dynamic loader finds: its cache (ldconfig -p) and LD_LIBRARY_PATH. */
async function findCudaLibraries(probes: DoctorProbes): Promise<{ name: string; path: string }[]> {
  const found = new Map<string, string>();
  const cache = (await settle(() => probes.run('ldconfig', ['-p']))).value ?? (await settle(() => probes.run('/sbin/ldconfig', ['-p']))).value ?? '';
  for (const line of cache.split('\n')) {
    const m = /^\s*(\S+)\s+\(([^)]*)\)\s+=>\s+(\S+)/.exec(line);
    if (m && CUDA_LIBRARY.test(m[1]) && !found.has(m[1])) found.set(m[1], m[3]);
  }
  for (const dir of (process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean)) {
    for (const name of await readdir(dir).catch(() => [] as string[])) if (CUDA_LIBRARY.test(name) && !found.has(name)) found.set(name, path.join(dir, name));
  }
  return [...found].map(([name, p]) => ({ name, path: p })).sort((a, b) => (a.name < b.name ? -1 : 1));
}

async function pathStatus(key: PathStatus['key'], what: string, target: string): Promise<PathStatus> {
  const exists = await lstat(target).then(
    () => true,
    () => false,
  );
  return { key, what, path: target, exists, bytes: exists ? await sizeOf(target) : 0, writable: await canWrite(target) };
}

async function sizeOf(target: string): Promise<number> {
  const info = await lstat(target).catch(() => null);
  if (!info) return 0;
  if (!info.isDirectory()) return info.size;
  let total = 0;
  for (const name of await readdir(target).catch(() => [] as string[])) total += await sizeOf(path.join(target, name));
  return total;
}

/** The folder, or the nearest existing one above a path not created yet, takes a probe file (fs/reasons.ts). */
async function canWrite(target: string): Promise<boolean> {
  return (await probeWritable(target).catch(() => ({ ok: false }))).ok;
}
