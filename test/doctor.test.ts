/**
 * `finetune doctor`: a report of what this machine can run, that tells the truth about the GPU
 * and never throws, whichever library is missing.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { doctor, type DoctorProbes } from '../src/engines/doctor.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
let tmp: string;
before(async () => {
  tmp = await mkdtemp(path.join(os.tmpdir(), 'finetune-doctor-'));
});
after(() => rm(tmp, { recursive: true, force: true }));

/** Whether a GPU is visible, found independently of doctor's code. */
function gpuVisible(): boolean {
  try {
    if (execFileSync('nvidia-smi', ['-L'], { encoding: 'utf8', timeout: 5000 }).trim()) return true;
  } catch {}
  return existsSync('/proc/driver/nvidia/gpus') && readdirSync('/proc/driver/nvidia/gpus').length > 0;
}

const KEYS = ['node', 'platform', 'cpus', 'packages', 'onnx', 'tfjs', 'auto', 'gpu', 'cudaLibraries', 'routes', 'paths', 'sharp', 'problems'];

const failing: DoctorProbes = {
  onnxruntime: () => Promise.reject(new Error('libonnxruntime.so.1: cannot open shared object file')),
  tfjsBackend: (name) => Promise.reject(new Error(`${name} is broken`)),
  autoBackend: () => Promise.reject(new Error('no backend')),
  sharp: () => Promise.reject(new Error('Could not load the "sharp" module')),
  run: () => Promise.reject(new Error('spawn failed')),
  packageVersion: () => Promise.reject(new Error('unreadable')),
};

describe('doctor', () => {
  test('the real machine: every section present, the GPU as it is', async () => {
    const r = await doctor();
    assert.deepEqual(Object.keys(r).sort(), [...KEYS].sort());
    assert.equal(r.node, process.versions.node);
    assert.equal(r.gpu.visible, gpuVisible(), JSON.stringify(r.gpu));
    if (!r.gpu.visible) assert.match(r.gpu.how, /^no GPU/);
    assert.deepEqual(r.tfjs.map((b) => b.name), ['node-gpu', 'node', 'wasm', 'cpu']);
    assert.equal(r.tfjs.find((b) => b.name === 'cpu')!.loads, true);
    assert.ok(['onnx', 'tfjs'].includes(r.auto.engine) && r.auto.reason.length > 0);
    assert.deepEqual(r.routes.map((x) => [x.route, x.cuda, x.cudnn]), [
      ['tfjs-node-gpu', '11.2', '8.1'],
      ['onnxruntime-cuda', '12', '9'],
    ]);
    assert.deepEqual(r.paths.slice(0, 4).map((p) => p.key), ['home', 'weights', 'keras', 'cache']);
    assert.match(r.sharp.libvips ?? '', /^\d+\.\d+/);
  });

  test('every library missing: a report, never a throw; each problem says what to do', async () => {
    const r = await doctor({ probes: failing });
    assert.deepEqual(Object.keys(r).sort(), [...KEYS].sort());
    assert.equal(r.onnx.loads, false);
    assert.match(r.onnx.error!, /libonnxruntime/);
    assert.ok(r.tfjs.every((b) => !b.loads && b.error));
    assert.equal(r.sharp.loads, false);
    assert.equal(r.gpu.visible, existsSync('/proc/driver/nvidia/gpus') && readdirSync('/proc/driver/nvidia/gpus').length > 0);
    const text = r.problems.map((p) => p.problem).join('\n');
    for (const word of ['onnxruntime-node does not load', 'no tfjs backend loads', 'sharp does not load']) assert.ok(text.includes(word), text);
    assert.ok(r.problems.every((p) => p.fix.length > 10), JSON.stringify(r.problems));
  });

  test('a GPU with CUDA 13 only: both GPU routes named with their missing libraries and the install command', async () => {
    const ldconfig = ['2 libs found in cache `/etc/ld.so.cache\'', '\tlibcudart.so.13 (libc6,x86-64) => /usr/local/cuda-13.0/lib/libcudart.so.13', '\tlibz.so.1 (libc6,x86-64) => /lib/libz.so.1'].join('\n');
    const probes: Partial<DoctorProbes> = {
      run: async (command) => (command === 'nvidia-smi' ? 'NVIDIA H100, 550.54, 81559 MiB\n' : command.endsWith('ldconfig') ? ldconfig : undefined),
      tfjsBackend: async (name) => {
        if (name === 'node-gpu') throw new Error('Could not load dynamic library libcudart.so.11.0');
      },
      onnxruntime: async () => ({ providers: ['cpu', 'cuda'], cudaProvider: false }),
    };
    const r = await doctor({ probes });
    assert.equal(r.gpu.visible, true);
    assert.deepEqual(r.gpu.devices, ['NVIDIA H100, 550.54, 81559 MiB']);
    assert.deepEqual(r.cudaLibraries, [{ name: 'libcudart.so.13', path: '/usr/local/cuda-13.0/lib/libcudart.so.13' }]);
    const tfjsProblem = r.problems.find((p) => /tfjs-node-gpu/.test(p.problem));
    assert.ok(tfjsProblem, JSON.stringify(r.problems));
    assert.match(tfjsProblem.problem, /libcudart\.so\.11\.0.*libcudnn\.so\.8 \(CUDA 11\.2, cuDNN 8\.1\)/);
    assert.match(tfjsProblem.fix, /npm install @tensorflow\/tfjs-node-gpu/);
    const ortProblem = r.problems.find((p) => /onnxruntime-node has no CUDA provider/.test(p.problem));
    assert.ok(ortProblem, JSON.stringify(r.problems));
    assert.match(ortProblem.fix, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
  });

  test('finetune doctor --json on this machine; an unwritable cache is a problem line in text', async () => {
    const blocker = path.join(tmp, 'a-file');
    await writeFile(blocker, 'x');
    const run = (args: string[], env: Record<string, string>) =>
      new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [path.join(ROOT, 'bin', 'finetune.js'), ...args], { env: { ...process.env, CI: '1', NO_COLOR: '1', ...env } });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d) => (stdout += d));
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
    const json = await run(['doctor', '--json'], { FINETUNE_HOME: path.join(tmp, 'home') });
    const r = JSON.parse(json.stdout);
    assert.deepEqual(Object.keys(r).sort(), [...KEYS].sort());
    assert.equal(json.code, r.problems.length > 0 ? 1 : 0, json.stderr);
    assert.equal(r.gpu.visible, gpuVisible());

    const text = await run(['doctor'], { FINETUNE_HOME: path.join(tmp, 'home'), FINETUNE_CACHE: path.join(blocker, 'features') });
    assert.equal(text.code, 1, text.stdout + text.stderr);
    if (!gpuVisible()) assert.match(text.stdout, /^GPU\s+no GPU/m);
    assert.match(text.stdout, new RegExp(`^problem: feature cache \\(\\$FINETUNE_CACHE\\) ${blocker.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}/features is not writable → .*FINETUNE_CACHE`, 'm'), text.stdout);
  });
});
