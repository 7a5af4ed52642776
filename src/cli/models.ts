import type { Command } from 'commander';
import { formatBytes } from '../index.ts';
import { printJson, printResult, printWarning } from './output.ts';
import { runCommand } from './run.ts';

interface JsonFlags {
  json?: boolean;
  quiet?: boolean;
}

const mb = formatBytes;

export function registerModels(program: Command): void {
  const models = program.command('models').description('pretrained backbones: list, pull, verify, import, export, layers');
  models
    .command('list')
    .description('known backbones, their settings, and whether their weights are here')
    .option('--json', 'print one JSON array')
    .action((flags: JsonFlags) =>
      runCommand(flags, async () => {
        const { listModels } = await import('../index.ts');
        const list = await listModels();
        if (flags.json) return printJson(list);
        printResult(['name'.padEnd(15), 'input'.padEnd(9), 'preprocess'.padEnd(11), 'layer'.padEnd(18), 'params'.padStart(12), 'download'.padStart(10), '  weights'].join(''));
        for (const m of list) {
          const where = m.path ?? (m.full?.path ? `${m.full.path} (with top)` : 'not downloaded');
          printResult([m.name.padEnd(15), m.inputSize.join('×').padEnd(9), m.preprocess.padEnd(11), m.defaultLayer.padEnd(18), m.parameters.toLocaleString('en-US').padStart(12), mb(m.downloadBytes).padStart(10), `  ${where}`].join(''));
        }
      }),
    );
  models
    .command('pull')
    .description('download weights into $FINETUNE_HOME/models (resumes; verifies the published md5)')
    .argument('<names...>', 'registry names; NAME-full for the with-top weights; imagenet-classes for the class names')
    .option('--force', 'download again even if the file is present')
    .option('--json', 'print one JSON object per file')
    .option('-q, --quiet', 'no progress output')
    .action((names: string[], flags: JsonFlags & { force?: boolean }) =>
      runCommand(flags, async ({ progress, signal }) => {
        const { pullModel } = await import('../index.ts');
        for (const name of names) {
          const result = await pullModel(name, { onProgress: progress, signal, force: flags.force });
          progress.stop();
          if (flags.json) printJson(result);
          else printResult(`${result.name}  ${result.downloaded ? 'downloaded' : 'present'}  ${result.path}  ${mb(result.bytes)}  md5 ${result.md5}`);
        }
      }),
    );
  models
    .command('verify')
    .description('re-hash every downloaded weights file against its published md5')
    .option('--json', 'print one JSON array')
    .action((flags: JsonFlags) =>
      runCommand(flags, async ({ out }) => {
        const { verifyModels } = await import('../index.ts');
        const results = await verifyModels();
        if (flags.json) printJson(results);
        else if (results.length === 0) printResult('no weights downloaded yet (finetune models pull NAME)');
        for (const r of flags.json ? [] : results) printResult(`${r.ok ? 'ok  ' : 'BAD '} ${r.name}  ${r.path}  md5 ${r.actual}${r.expected ? '' : ' (no published hash)'}`);
        const bad = results.filter((r) => !r.ok);
        for (const r of bad) printWarning(out, `${r.path}: md5 ${r.actual}, published ${r.expected}; delete it and run finetune models pull ${r.name}`);
        return bad.length > 0 ? 1 : 0;
      }),
    );
  models
    .command('import')
    .description('copy a weights file or model folder into $FINETUNE_HOME/models after checking that it loads')
    .argument('<file>', 'a Keras .h5 (weights of a registry backbone, or a whole model), a tfjs model folder or an ONNX .onnx file')
    .option('--name <name>', 'name to use it by (--backbone NAME); default: the file name')
    .option('--json', 'print one JSON object')
    .action((file: string, flags: JsonFlags & { name?: string }) =>
      runCommand(flags, async () => {
        const { importModel } = await import('../index.ts');
        const result = await importModel(file, { name: flags.name });
        if (flags.json) printJson(result);
        else printResult(`imported ${file} as ${result.name} → ${result.path}`);
      }),
    );
  models
    .command('export')
    .description('write a backbone as a tfjs layers model folder, or as one ONNX file (--format onnx)')
    .argument('<backbone>', 'registry name or path (tfjs folder, Keras .h5, .onnx)')
    .argument('<dir>', 'new folder to write (tfjs), or new .onnx file (onnx)')
    .option('--format <format>', 'output format: tfjs or onnx', 'tfjs')
    .option('--weights <file>', 'weights file for a registry backbone')
    .option('--layer <name>', 'onnx: end the network at this layer (default: its feature layer); preprocessing and input size go in the metadata')
    .option('--json', 'print one JSON object')
    .action((backbone: string, dir: string, flags: JsonFlags & { format: string; weights?: string; layer?: string }) =>
      runCommand(flags, async () => {
        const { exportBackbone } = await import('../index.ts');
        await exportBackbone(backbone, dir, { format: flags.format, weights: flags.weights, layer: flags.layer });
        if (flags.json) printJson({ backbone, dir, format: flags.format });
        else printResult(flags.format === 'onnx' ? `wrote ${dir}` : `wrote ${dir}/model.json`);
      }),
    );
  models
    .command('layers')
    .description("list a backbone's layers with their output shapes (candidates for --layer)")
    .argument('<backbone>', 'registry name or path')
    .option('--weights <file>', 'weights file for a registry backbone')
    .option('--json', 'print one JSON array')
    .action((backbone: string, flags: JsonFlags & { weights?: string }) =>
      runCommand(flags, async () => {
        const { backboneLayers } = await import('../index.ts');
        const layers = await backboneLayers(backbone, { weights: flags.weights });
        if (flags.json) return printJson(layers);
        for (const l of layers) printResult(`${l.name.padEnd(28)}${l.className.padEnd(24)}[${l.outputShape.map((d) => d ?? 'null').join(', ')}]${l.isDefault ? '  ← default' : ''}`);
      }),
    );
}
