import type { Command } from 'commander';
import { EXIT, formatBytes } from '../index.ts';
import type { DoctorReport } from '../index.ts';
import { paint, printJson, printResult, type Output } from './output.ts';
import { runCommand } from './run.ts';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('what this machine can run: versions, engines and tfjs backends, GPU and CUDA libraries, folders; each problem with what to do')
    .option('--json', 'print one JSON object')
    .action((flags: { json?: boolean }) =>
      runCommand(flags, async ({ out }) => {
        const { doctor } = await import('../index.ts');
        const report = await doctor();
        if (flags.json) printJson(report);
        else for (const line of doctorLines(out, report)) printResult(line);
        return report.problems.length > 0 ? EXIT.runtime : EXIT.ok;
      }),
    );
}

const mb = formatBytes;
const yes = (out: Output, ok: boolean, text: string) => paint(out, ok ? 'green' : 'yellow', text);

export function doctorLines(out: Output, r: DoctorReport): string[] {
  const lines: string[] = [];
  const versions = Object.entries(r.packages).map(([name, v]) => `${name} ${v ?? '(not installed)'}`);
  lines.push(`node       ${r.node} on ${r.platform}, ${r.cpus} CPU threads`);
  lines.push(`packages   ${versions.join(', ')}`);
  lines.push(`onnx       ${r.onnx.loads ? yes(out, true, 'loads') : yes(out, false, `does not load: ${r.onnx.error}`)}; providers listed: ${r.onnx.providers.join(', ') || '-'}; CUDA provider library ${r.onnx.cudaProvider ? 'installed' : 'not installed'}`);
  lines.push(`tfjs       ${r.tfjs.map((b) => `${b.name} ${b.loads ? yes(out, true, 'loads') : yes(out, false, `no (${b.error})`)}`).join('; ')}`);
  lines.push(`auto       engine ${r.auto.engine}, tfjs backend ${r.auto.backend ?? 'none'}: ${r.auto.reason}`);
  lines.push(`GPU        ${r.gpu.visible ? `${r.gpu.devices.join('; ')} (${r.gpu.how})` : r.gpu.how}`);
  lines.push(`CUDA libs  ${r.cudaLibraries.length > 0 ? r.cudaLibraries.map((l) => `${l.name} (${l.path})`).join(', ') : 'none found by the dynamic loader'}`);
  for (const route of r.routes) {
    const state = route.missing.length === 0 ? 'all found' : `missing ${route.missing.join(', ')}`;
    lines.push(`  ${route.route.padEnd(17)}needs CUDA ${route.cuda} + cuDNN ${route.cudnn}: ${state}`);
  }
  const label = { home: 'home', weights: 'weights', keras: 'keras', cache: 'cache', lastModel: 'last model' } as const;
  for (const p of r.paths) {
    lines.push(`${label[p.key].padEnd(11)}${p.path} (${p.exists ? mb(p.bytes) : 'not created yet'}, ${p.writable ? 'writable' : yes(out, false, 'not writable')}): ${p.what}`);
  }
  lines.push(`sharp      ${r.sharp.loads ? `libvips ${r.sharp.libvips}, images up to ${r.sharp.maxInputPixels?.toLocaleString('en-US')} pixels` : yes(out, false, `does not load: ${r.sharp.error}`)}`);
  if (r.problems.length === 0) lines.push(yes(out, true, 'no problems found'));
  for (const p of r.problems) lines.push(`${yes(out, false, 'problem:')} ${p.problem} → ${p.fix}`);
  return lines;
}
