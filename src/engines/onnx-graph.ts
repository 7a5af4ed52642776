import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;

/** onnxruntime 1.30 runs opset 17 fully; every op used here exists in it with these semantics. */
export const OPSET = 17;
const IR_VERSION = 8;

export type Attr = number | number[] | string | { floats: number[] } | { float: number };

/** One node as built, attributes kept readable so later passes (shapes, gradients) can inspect them. */
export interface GraphNode {
  opType: string;
  inputs: string[];
  /** A pass may append outputs (MaxPool's indices for its gradient). */
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface Constant {
  name: string;
  data: Float32Array | BigInt64Array;
  dims: number[];
}

export type ElemType = 'float' | 'int64';

export interface ValueSpec {
  name: string;
  /** -1 marks the symbolic batch dimension N. */
  dims: number[];
  type?: ElemType;
}

/**
 * Accumulates nodes and initializers of one ONNX graph. Names are made unique here so the
 * translators can name values after the Keras layers without worrying about collisions.
 */
export class GraphBuilder {
  readonly nodes: GraphNode[] = [];
  readonly constants = new Map<string, Constant>();
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
    this.nodes.push({ opType, inputs, outputs: [output], attrs });
    return output;
  }

  floats(name: string, data: Float32Array, dims: number[]): string {
    const unique = this.unique(name);
    this.constants.set(unique, { name: unique, data, dims });
    return unique;
  }

  scalar(name: string, value: number): string {
    return this.floats(name, Float32Array.of(value), []);
  }

  int64s(name: string, values: number[]): string {
    const unique = this.unique(name);
    this.constants.set(unique, { name: unique, data: BigInt64Array.from(values, (v) => BigInt(v)), dims: [values.length] });
    return unique;
  }

  /** Encodes the graph with one float32 input and one float32 output, the batch dimension named N. */
  encode(input: { name: string; dims: number[] }, output: { name: string; dims: number[] }): Uint8Array {
    const batchFirst = (dims: number[]) => dims.map((d, i) => (i === 0 ? -1 : d));
    return this.encodeGraph([{ name: input.name, dims: batchFirst(input.dims) }], [{ name: output.name, dims: batchFirst(output.dims) }]);
  }

  /**
   * Encodes the graph with the given inputs and outputs. A constant named as an input becomes a
   * pure graph input (a trainable weight fed each run); constants no node reads are left out.
   */
  encodeGraph(inputs: ValueSpec[], outputs: ValueSpec[], graphName = 'backbone', nodes: GraphNode[] = this.nodes): Uint8Array {
    const asInput = new Set(inputs.map((v) => v.name));
    const read = new Set(nodes.flatMap((n) => n.inputs));
    const initializer = [...this.constants.values()]
      .filter((c) => !asInput.has(c.name) && read.has(c.name))
      .map((c) => ({
        name: c.name,
        dataType: c.data instanceof Float32Array ? onnx.TensorProto.DataType.FLOAT : onnx.TensorProto.DataType.INT64,
        dims: c.dims,
        rawData: new Uint8Array(c.data.buffer, c.data.byteOffset, c.data.byteLength),
      }));
    const node = nodes.map((n, i) => ({
      opType: n.opType,
      name: `${n.outputs[0]}/node${i}`,
      input: n.inputs,
      output: n.outputs,
      attribute: Object.entries(n.attrs).map(([name, value]) => attribute(name, value)),
    }));
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      producerName: 'finetune',
      opsetImport: [{ domain: '', version: OPSET }],
      graph: { name: graphName, node, initializer, input: inputs.map(valueInfo), output: outputs.map(valueInfo) },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(v: ValueSpec): onnxProto.onnx.IValueInfoProto {
  return {
    name: v.name,
    type: {
      tensorType: {
        elemType: v.type === 'int64' ? onnx.TensorProto.DataType.INT64 : onnx.TensorProto.DataType.FLOAT,
        shape: { dim: v.dims.map((d) => (d < 0 ? { dimParam: 'N' } : { dimValue: d })) },
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
