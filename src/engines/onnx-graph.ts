import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** onnxruntime 1.30 runs opset 17 fully; every op used here exists in it with these semantics. */
export const OPSET = 17;
const IR_VERSION = 8;

export type Attr = number | number[] | string | { floats: number[] } | { float: number };

/**
 * Accumulates nodes and initializers of one ONNX graph. Names are made unique here so the
 * translators can name values after the Keras layers without worrying about collisions.
 */
export class GraphBuilder {
  private readonly nodes: onnxProto.onnx.INodeProto[] = [];
  private readonly initializers: onnxProto.onnx.ITensorProto[] = [];
  private readonly used = new Set<string>();

  unique(base: string): string {
    const clean = base.replace(/[^A-Za-z0-9_./:-]/g, '_');
    let name = clean;
    for (let i = 1; this.used.has(name); i++) name = `${clean}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Adds one node with a single output and returns that output's name. */
  op(opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outName = opType): string {
    return this.opInto(this.unique(outName), opType, inputs, attrs);
  }

  /** Like `op`, writing to a name reserved earlier with `unique` (the graph's output). */
  opInto(output: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    this.nodes.push({
      opType,
      name: this.unique(`${output}/node`),
      input: inputs,
      output: [output],
      attribute: Object.entries(attrs).map(([name, value]) => attribute(name, value)),
    });
    return output;
  }

  floats(name: string, data: Float32Array, dims: number[]): string {
    const unique = this.unique(name);
    this.initializers.push({
      name: unique,
      dataType: onnx.TensorProto.DataType.FLOAT,
      dims,
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return unique;
  }

  scalar(name: string, value: number): string {
    return this.floats(name, Float32Array.of(value), []);
  }

  int64s(name: string, values: number[]): string {
    const data = BigInt64Array.from(values, (v) => BigInt(v));
    const unique = this.unique(name);
    this.initializers.push({
      name: unique,
      dataType: onnx.TensorProto.DataType.INT64,
      dims: [values.length],
      rawData: new Uint8Array(data.buffer),
    });
    return unique;
  }

  /** Encodes the graph with one float32 input and one float32 output, the batch dimension named N. */
  encode(input: { name: string; dims: number[] }, output: { name: string; dims: number[] }): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'finetune',
      opsetImport: [{ domain: '', version: OPSET }],
      graph: {
        name: 'backbone',
        node: this.nodes,
        initializer: this.initializers,
        input: [valueInfo(input.name, input.dims)],
        output: [valueInfo(output.name, output.dims)],
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, dims: number[]): onnxProto.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: onnx.TensorProto.DataType.FLOAT,
        shape: { dim: dims.map((d, i) => (i === 0 ? { dimParam: 'N' } : { dimValue: d })) },
      },
    },
  };
}

function attribute(name: string, value: Attr): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') return { name, type: T.INT, i: value };
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  return { name, type: T.FLOATS, floats: value.floats };
}
