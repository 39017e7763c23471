/**
 * Read-only views of a running context's graph for the UI and the metrics: the DStream DAG,
 * the keyed state of stateful streams and the direct Kafka inputs. Everything here is a plain
 * read of the nodes, done on demand (or once per completed batch), never per record.
 * @internal
 */
import type { Effect } from "effect"
import type { Admin } from "../kafkaClient.ts"
import type { StreamingContext } from "../../StreamingContext.ts"
import { Graph } from "../graph.ts"
import type { KeyMap } from "../keyMap.ts"
import { InputNode, type Node, OutputNode } from "../node.ts"
import { KeyedStateNode } from "../state.ts"

/** The graph of a context made by `StreamingContext.make`, if it is one. @internal */
export const graphOf = (ssc: StreamingContext): Graph | undefined =>
  "graph" in ssc && ssc.graph instanceof Graph ? ssc.graph : undefined

/** One node of the drawn DAG. @internal */
export interface DagNode {
  readonly id: number
  readonly kind: string
  /** Input name, output label, or the checkpoint name of a stateful stream. */
  readonly label: string
  readonly role: "input" | "operator" | "output"
  readonly parents: ReadonlyArray<number>
  /** Longest path from an input (0 for inputs): the DAG's column. */
  readonly depth: number
  readonly slideMillis: number
}

/** The nodes reachable from the output operations (operators fused into a loop appear once). @internal */
export const reachable = (graph: Graph): Array<Node<any>> => {
  const seen = new Set<Node<any>>()
  for (const output of graph.outputs) output.collect(seen)
  return [...seen].sort((a, b) => a.id - b.id)
}

/** The DAG: inputs → operators → outputs, each node with its kind and parents. @internal */
export const dag = (graph: Graph): Array<DagNode> => {
  const nodes = reachable(graph)
  const depth = new Map<Node<any>, number>()
  const depthOf = (n: Node<any>): number => {
    const known = depth.get(n)
    if (known !== undefined) return known
    let d = 0
    for (const p of n.parents) d = Math.max(d, depthOf(p) + 1)
    depth.set(n, d)
    return d
  }
  return nodes.map((n) => ({
    id: n.id,
    kind: n.kind,
    label: n instanceof InputNode
      ? n.name
      : n instanceof OutputNode
      ? n.label
      : n instanceof KeyedStateNode && n.checkpointName !== undefined
      ? n.checkpointName
      : "",
    role: n instanceof InputNode ? "input" : n instanceof OutputNode ? "output" : "operator",
    parents: n.parents.map((p) => p.id),
    depth: depthOf(n),
    slideMillis: n.slideMillis,
  }))
}

/** The stateful streams (updateStateByKey, mapWithState) reachable from an output. @internal */
export const stateNodes = (graph: Graph): Array<KeyedStateNode<any, any, any> & { readonly state: KeyMap<any, any> }> =>
  reachable(graph).flatMap((n) => n instanceof KeyedStateNode && hasKeyMap(n) ? [n] : [])

const hasKeyMap = <N extends object>(n: N): n is N & { readonly state: KeyMap<any, any> } =>
  "state" in n && typeof n.state === "object" && n.state !== null && "size" in n.state && "forEach" in n.state

const stop = Symbol("stop")

/**
 * Approximate bytes of a keyed state: the JSON size of up to `sample` entries, scaled to the
 * key count (2 bytes per character, as JS strings are UTF-16). O(sample), not O(keys).
 * @internal
 */
export const approximateBytes = (state: KeyMap<any, any>, sample = 64): number => {
  const size = state.size
  if (size === 0) return 0
  let chars = 0
  let n = 0
  try {
    state.forEach((v, k) => {
      chars += jsonLength(k) + jsonLength(v) + 8
      if (++n >= sample) throw stop
    })
  } catch (e) {
    if (e !== stop) throw e
  }
  return Math.round((chars / n) * size * 2)
}

const jsonLength = (u: unknown): number => {
  try {
    return JSON.stringify(u)?.length ?? 4
  } catch {
    return 16
  }
}

/** The graph-checkpoint interval (as the checkpointing runtime computes it). @internal */
export const checkpointInterval = (graph: Graph): number => {
  let interval: number | undefined
  for (const node of reachable(graph)) {
    if (!node.mustCheckpoint || node.checkpointMillis === undefined) continue
    interval = interval === undefined ? node.checkpointMillis : Math.min(interval, node.checkpointMillis)
  }
  return interval ?? graph.batchMillis
}

/** What the UI reads of a direct Kafka input (receivers/kafka.ts's `KafkaInputNode`). @internal */
export interface KafkaInputView extends InputNode<unknown> {
  readonly committed: ReadonlyMap<
    string,
    { readonly topic: string; readonly partition: number; readonly offset: number }
  >
  readonly assignment: () => ReadonlyArray<{ readonly topic: string; readonly partition: number }>
  /** A connected admin client with the stream's own settings, for the lag poller. */
  readonly lagAdmin: () => Effect.Effect<Admin, unknown>
}

/** The direct Kafka inputs (by kind and shape, so the UI does not load a Kafka client). @internal */
export const kafkaInputs = (graph: Graph): Array<KafkaInputView> => graph.inputs.filter(isKafkaInput)

const isKafkaInput = (n: InputNode<any>): n is KafkaInputView =>
  n.kind === "DirectKafkaInputDStream" && "committed" in n && n.committed instanceof Map && "assignment" in n &&
  typeof n.assignment === "function" && "lagAdmin" in n && typeof n.lagAdmin === "function"

/** Restarts of each receiver so far, by stream id (receiver inputs only). @internal */
export const receiverRestarts = (graph: Graph): Map<number, { readonly name: string; readonly restarts: number }> => {
  const out = new Map<number, { readonly name: string; readonly restarts: number }>()
  for (const input of graph.inputs) {
    if (input.kind === "ReceiverInputDStream" && "restarts" in input && typeof input.restarts === "number") {
      out.set(input.streamId, { name: input.name, restarts: input.restarts })
    }
  }
  return out
}
