import { Option, type Command } from 'commander';
import { EXIT, formatBytes } from '../index.ts';
import { printJson, printResult } from './output.ts';
import { runCommand } from './run.ts';

interface ExportFlags {
  model?: string;
  format: 'onnx' | 'tfjs';
  withDemo?: boolean;
  weights?: string;
  backbone?: string;
  download: boolean;
  backend: 'auto' | 'node-gpu' | 'node' | 'wasm' | 'cpu';
  json?: boolean;
  quiet?: boolean;
}


export function registerExport(program: Command): void {
  program
    .command('export')
    .description('write a trained model as one ONNX or tfjs model (pixels → calibrated probabilities) with labels, preprocessing and a README; runs without finetune')
    .argument('<out>', 'new folder to write')
    .option('--model <dir>', 'model folder (default: the model trained last)')
    .addOption(new Option('--format <format>', 'onnx (onnxruntime-node, onnxruntime-web) or tfjs (tf.loadLayersModel)').choices(['onnx', 'tfjs']).default('onnx'))
    .option('--with-demo', 'also write index.html: classify photos in a browser, offline (the tfjs runtime is copied in)')
    .option('--weights <file>', 'backbone weights file, if not in the caches (must be the ones used in training)')
    .option('--backbone <path>', 'where the backbone is now, if it was given by a path that has moved')
    .option('--no-download', 'never download missing backbone weights (FINETUNE_OFFLINE=1 does the same)')
    .addOption(new Option('--backend <backend>').choices(['auto', 'node-gpu', 'node', 'wasm', 'cpu']).default('auto').hideHelp())
    .option('--json', 'print the result as one JSON object')
    .option('-q, --quiet', 'no progress output')
    .addHelpText('after', '\nExample:\n  finetune export dogscats-web --model models/dogscats --format tfjs --with-demo')
    .action((out: string, flags: ExportFlags) =>
      runCommand(flags, async ({ progress }) => {
        const { loadModel } = await import('../index.ts');
        const { exportModel } = await import('../index.ts');
        const model = await loadModel(flags.model, { backend: flags.backend });
        try {
          const result = await exportModel(model, out, { format: flags.format, withDemo: flags.withDemo, weights: flags.weights, backbone: flags.backbone, download: flags.download, onProgress: progress });
          progress.stop();
          if (flags.json) {
            printJson(result);
          } else {
            printResult(`exported ${model.dir} to ${result.dir} (${result.format}, pixels ${result.inputSize.join('×')} → ${result.classes.length} classes)`);
            for (const f of result.files) printResult(`  ${f.name.padEnd(16)} ${formatBytes(f.bytes).padStart(9)}`);
          }
          return EXIT.ok;
        } finally {
          model.head.dispose();
        }
      }),
    );
}
