/**
 * The live page's model (Spark's `StreamingJobProgressListener`): fed by the context's listener
 * events, it keeps the active batches, the last `retainedBatches` completed ones, per-input
 * status and a few counters, and answers the JSON API. Its memory is bounded by
 * `retainedBatches` (plus the batches queued in the engine), whatever the run's length.
 * @internal
 */
import type { BatchInfo, OutputOperationInfo, StreamingEvent, StreamInputInfo } from "../../Listener.ts"
import type { Graph } from "../graph.ts"
import {
  approximateBytes,
  checkpointInterval,
  dag,
  type DagNode,
  kafkaInputs,
  type KafkaInputView,
  receiverRestarts,
  stateNodes,
} from "./inspect.ts"

/** Spark's `spark.streaming.ui.retainedBatches` default. @internal */
export const defaultRetainedBatches = 1000
/** Rebalance events kept. @internal */
export const retainedRebalances = 100

/** One output operation of a batch, as the API shows it. @internal */
export interface OutputOpView {
  readonly id: number
  readonly name: string
  readonly startTime: number | undefined
  readonly endTime: number | undefined
  readonly durationMillis: number | undefined
  readonly status: "running" | "succeeded" | "failed"
  readonly failureReason: string | undefined
}

/** One batch, as the API shows it. @internal */
export interface BatchView {
  readonly batchTime: number
  readonly status: "queued" | "processing" | "completed" | "failed"
  readonly numRecords: number
  readonly submissionTime: number
  readonly processingStartTime: number | undefined
  readonly processingEndTime: number | undefined
  readonly schedulingDelay: number | undefined
  readonly processingDelay: number | undefined
  readonly totalDelay: number | undefined
  readonly outputOps: { readonly succeeded: number; readonly failed: number; readonly total: number }
  /** The first failure reason among the batch's output operations. */
  readonly failureReason: string | undefined
}

/** A batch's page. @internal */
export interface BatchDetail extends BatchView {
  readonly batchMillis: number
  readonly inputs: ReadonlyArray<StreamInputInfo>
  readonly outputOperations: ReadonlyArray<OutputOpView>
}

interface BatchRecord {
  readonly batchTime: number
  submissionTime: number
  processingStartTime: number | undefined
  processingEndTime: number | undefined
  inputs: Readonly<Record<number, StreamInputInfo>>
  numRecords: number
  readonly ops: Map<number, OutputOperationInfo>
  failed: boolean
  completed: boolean
}

interface InputStatus {
  readonly streamId: number
  readonly name: string
  readonly kind: string
  readonly receiver: boolean
  active: boolean | undefined
  errors: number
  lastErrorTime: number | undefined
  lastErrorMessage: string | undefined
}

/** A change of a Kafka input's assigned partitions, seen at a completed batch. @internal */
export interface RebalanceEvent {
  readonly input: string
  readonly batchTime: number
  readonly assigned: ReadonlyArray<string>
  readonly added: ReadonlyArray<string>
  readonly revoked: ReadonlyArray<string>
}

interface CheckpointSeen {
  readonly time: number
  /** End of the batch minus end of its last output: the checkpoint write and offset bookkeeping. */
  readonly millis: number
}

/** @internal */
export class Collector {
  private startTime: number | undefined
  private stopTime: number | undefined
  private readonly active = new Map<number, BatchRecord>()
  /** Completed batches, oldest first, at most `retainedBatches`. */
  private readonly completed: Array<BatchRecord> = []
  private readonly byTime = new Map<number, BatchRecord>()
  private readonly inputs = new Map<number, InputStatus>()
  private readonly assignments = new Map<string, ReadonlyArray<string>>()
  private readonly rebalances: Array<RebalanceEvent> = []
  private lastCheckpoint: CheckpointSeen | undefined
  /** High-water marks read by the lag poller, by `streamId topic partition`. */
  private readonly highWatermarks = new Map<string, number>()
  private frozen: { readonly interval: number; readonly kafka: ReadonlyArray<KafkaInputView> } | undefined
  totalCompleted = 0
  totalFailed = 0
  totalRecords = 0

  constructor(
    readonly graph: Graph | undefined,
    readonly batchMillis: number,
    readonly retainedBatches: number,
    readonly checkpointDirectory: () => string | undefined,
  ) {}

  /** The listener: O(outputs + inputs) per event, no I/O. */
  readonly onEvent = (e: StreamingEvent): void => {
    switch (e._tag) {
      case "StreamingStarted":
        this.startTime = e.time
        this.stopTime = undefined
        this.registerInputs()
        return
      case "StreamingStopped":
        this.stopTime = e.time
        // A batch whose output failed never completes (the context stops): show it as failed,
        // with the records its inputs reported while it ran.
        for (const b of [...this.active.values()]) {
          if (!b.failed) continue
          this.refreshInputs(b)
          this.finish(b)
        }
        for (const s of this.inputs.values()) if (s.receiver) s.active = false
        return
      case "BatchSubmitted":
        this.track(e.batchInfo)
        return
      case "BatchStarted":
        this.track(e.batchInfo)
        return
      case "BatchCompleted": {
        const b = this.track(e.batchInfo)
        for (const op of e.batchInfo.outputOperationInfos) {
          b.ops.set(op.id, op)
          if (op.failureReason !== undefined) b.failed = true
        }
        this.finish(b)
        this.afterBatch(e.batchInfo)
        return
      }
      case "OutputOperationStarted":
      case "OutputOperationCompleted": {
        const op = e.outputOperationInfo
        const b = this.active.get(op.batchTime)
        if (b === undefined) return
        b.ops.set(op.id, op)
        if (op.failureReason !== undefined) {
          b.failed = true
          if (op.endTime !== undefined) b.processingEndTime = op.endTime
        }
        return
      }
      case "ReceiverStarted":
      case "ReceiverError":
      case "ReceiverStopped": {
        const info = e.receiverInfo
        let s = this.inputs.get(info.streamId)
        if (s === undefined) {
          s = this.newInput(info.streamId, info.name, "ReceiverInputDStream", true)
          this.inputs.set(info.streamId, s)
        }
        if (e._tag === "ReceiverStarted") {
          s.active = true
        } else if (e._tag === "ReceiverStopped") {
          s.active = false
        } else {
          s.errors++
        }
        if (info.lastErrorMessage !== undefined) {
          s.lastErrorMessage = info.lastErrorMessage
          s.lastErrorTime = info.lastErrorTime
        }
        return
      }
    }
  }

  private newInput(streamId: number, name: string, kind: string, receiver: boolean): InputStatus {
    return {
      streamId,
      name,
      kind,
      receiver,
      active: receiver ? false : undefined,
      errors: 0,
      lastErrorTime: undefined,
      lastErrorMessage: undefined,
    }
  }

  private registerInputs(): void {
    for (const input of this.graph?.inputs ?? []) {
      if (this.inputs.has(input.streamId)) continue
      const receiver = input.kind === "ReceiverInputDStream"
      this.inputs.set(input.streamId, this.newInput(input.streamId, input.name, input.kind, receiver))
    }
  }

  private track(info: BatchInfo): BatchRecord {
    let b = this.active.get(info.batchTime)
    if (b === undefined) {
      b = {
        batchTime: info.batchTime,
        submissionTime: info.submissionTime,
        processingStartTime: undefined,
        processingEndTime: undefined,
        inputs: info.streamIdToInputInfo,
        numRecords: info.numRecords,
        ops: new Map(),
        failed: false,
        completed: false,
      }
      this.active.set(info.batchTime, b)
    }
    b.submissionTime = info.submissionTime
    b.inputs = info.streamIdToInputInfo
    b.numRecords = info.numRecords
    if (info.processingStartTime !== undefined) b.processingStartTime = info.processingStartTime
    if (info.processingEndTime !== undefined) b.processingEndTime = info.processingEndTime
    return b
  }

  /** Reads a batch's input infos from the graph (inputs record them while the batch computes). */
  private refreshInputs(b: BatchRecord): void {
    const inputs: Record<number, StreamInputInfo> = {}
    let n = 0
    for (const input of this.graph?.inputs ?? []) {
      const info = input.inputInfo.get(b.batchTime)
      if (info === undefined) continue
      inputs[input.streamId] = { streamId: input.streamId, name: input.name, ...info }
      n += info.numRecords
    }
    if (Object.keys(inputs).length === 0) return
    b.inputs = inputs
    b.numRecords = n
  }

  private finish(b: BatchRecord): void {
    this.active.delete(b.batchTime)
    if (b.completed) return
    b.completed = true
    this.totalCompleted++
    if (b.failed) this.totalFailed++
    this.totalRecords += b.numRecords
    const previous = this.byTime.get(b.batchTime)
    if (previous !== undefined) {
      // A re-run of a batch time (recovery): replace the old row.
      const i = this.completed.indexOf(previous)
      if (i >= 0) this.completed[i] = b
    } else {
      this.completed.push(b)
    }
    this.byTime.set(b.batchTime, b)
    while (this.completed.length > this.retainedBatches) {
      const old = this.completed.shift()!
      if (this.byTime.get(old.batchTime) === old) this.byTime.delete(old.batchTime)
    }
  }

  /** `true` between StreamingStarted and StreamingStopped. */
  isRunning(): boolean {
    return this.startTime !== undefined && this.stopTime === undefined
  }

  /** Records a partition's high-water mark; returns its lag (high − committed) when the committed offset is known. */
  setHighWatermark(streamId: number, topic: string, partition: number, high: number): number | undefined {
    this.highWatermarks.set(`${streamId} ${topic} ${partition}`, high)
    const input = this.graph === undefined ? undefined : kafkaInputs(this.graph).find((i) => i.streamId === streamId)
    if (input === undefined) return undefined
    for (const c of input.committed.values()) {
      if (c.topic === topic && c.partition === partition) return Math.max(0, high - c.offset)
    }
    return undefined
  }

  /** Per completed batch: checkpoint times, Kafka assignment changes (O(stateful + partitions)). */
  private afterBatch(info: BatchInfo): void {
    const graph = this.graph
    if (graph === undefined) return
    // The graph is frozen once started: its checkpoint interval and Kafka inputs are found once.
    const frozen = this.frozen ??= { interval: checkpointInterval(graph), kafka: kafkaInputs(graph) }
    if (this.checkpointDirectory() !== undefined && graph.zeroTime !== undefined && info.processingEndTime) {
      const interval = frozen.interval
      if ((info.batchTime - graph.zeroTime) % interval === 0) {
        let lastOutputEnd = info.processingStartTime ?? info.processingEndTime
        for (const op of info.outputOperationInfos) {
          if (op.endTime !== undefined && op.endTime > lastOutputEnd) lastOutputEnd = op.endTime
        }
        this.lastCheckpoint = { time: info.batchTime, millis: info.processingEndTime - lastOutputEnd }
      }
    }
    for (const input of frozen.kafka) {
      const now = input.assignment().map((tp) => `${tp.topic}-${tp.partition}`).sort()
      const before = this.assignments.get(input.name)
      if (before === undefined || before.join() !== now.join()) {
        this.assignments.set(input.name, now)
        const old = new Set(before ?? [])
        const fresh = new Set(now)
        this.rebalances.push({
          input: input.name,
          batchTime: info.batchTime,
          assigned: now,
          added: now.filter((p) => !old.has(p)),
          revoked: [...old].filter((p) => !fresh.has(p)),
        })
        if (this.rebalances.length > retainedRebalances) this.rebalances.shift()
      }
    }
  }

  // ---- views -------------------------------------------------------------------------------

  /** Retained completed batches, oldest first. */
  private retained(): Array<BatchRecord> {
    return this.completed
  }

  private view(b: BatchRecord): BatchView {
    let succeeded = 0
    let failed = 0
    let failureReason: string | undefined
    for (const op of b.ops.values()) {
      if (op.failureReason !== undefined) {
        failed++
        failureReason ??= op.failureReason
      } else if (op.endTime !== undefined) succeeded++
    }
    const schedulingDelay = b.processingStartTime === undefined ? undefined : b.processingStartTime - b.submissionTime
    const processingDelay = b.processingStartTime === undefined || b.processingEndTime === undefined
      ? undefined
      : b.processingEndTime - b.processingStartTime
    return {
      batchTime: b.batchTime,
      status: b.completed
        ? (b.failed ? "failed" : "completed")
        : b.processingStartTime === undefined
        ? "queued"
        : "processing",
      numRecords: b.numRecords,
      submissionTime: b.submissionTime,
      processingStartTime: b.processingStartTime,
      processingEndTime: b.completed ? b.processingEndTime : undefined,
      schedulingDelay,
      processingDelay: b.completed ? processingDelay : undefined,
      totalDelay: b.completed && schedulingDelay !== undefined && processingDelay !== undefined
        ? schedulingDelay + processingDelay
        : undefined,
      outputOps: { succeeded, failed, total: this.outputsAt(b.batchTime) },
      failureReason,
    }
  }

  private outputsAt(t: number): number {
    const outputs = this.graph?.outputs
    if (outputs === undefined) return 0
    let n = 0
    for (const o of outputs) {
      if (o.zeroTime === undefined || o.isTimeValid(t)) n++
    }
    return n
  }

  /** The status line and averages over the retained batches. */
  status(now: number) {
    const retained = this.retained()
    const avg = (f: (b: BatchView) => number | undefined): number | undefined => {
      let sum = 0
      let n = 0
      for (const b of retained) {
        const v = f(this.view(b))
        if (v !== undefined) {
          sum += v
          n++
        }
      }
      return n === 0 ? undefined : sum / n
    }
    let queued = 0
    let processing = 0
    for (const b of this.active.values()) {
      if (b.processingStartTime === undefined) queued++
      else processing++
    }
    const receivers = [...this.inputs.values()].filter((s) => s.receiver)
    return {
      running: this.startTime !== undefined && this.stopTime === undefined,
      batchIntervalMillis: this.batchMillis,
      startTime: this.startTime,
      stopTime: this.stopTime,
      uptimeMillis: this.startTime === undefined ? 0 : (this.stopTime ?? now) - this.startTime,
      completedBatches: this.totalCompleted,
      failedBatches: this.totalFailed,
      totalRecords: this.totalRecords,
      retainedBatches: this.retainedBatches,
      retainedCompleted: retained.length,
      activeBatches: { queued, processing },
      receivers: { active: receivers.filter((r) => r.active).length, total: receivers.length },
      averages: {
        inputRate: avg((b) => b.numRecords * 1000 / this.batchMillis),
        schedulingDelay: avg((b) => b.schedulingDelay),
        processingTime: avg((b) => b.processingDelay),
        totalDelay: avg((b) => b.totalDelay),
      },
    }
  }

  /** Active (queued, then processing; newest first) and completed batches (newest first). */
  batches(limit = this.retainedBatches) {
    const active = [...this.active.values()].map((b) => this.view(b))
    active.sort((a, b) => a.status === b.status ? b.batchTime - a.batchTime : a.status === "queued" ? -1 : 1)
    const retained = this.retained()
    const completed: Array<BatchView> = []
    for (let i = retained.length - 1; i >= 0 && completed.length < limit; i--) completed.push(this.view(retained[i]))
    return { active, completed, totalCompleted: this.totalCompleted }
  }

  /** One batch's page, or `undefined` if it is neither active nor retained. */
  batch(time: number): BatchDetail | undefined {
    const b = this.active.get(time) ?? this.byTime.get(time)
    if (b === undefined) return undefined
    const outputOperations: Array<OutputOpView> = [...b.ops.values()].sort((x, y) => x.id - y.id).map((op) => ({
      id: op.id,
      name: op.name,
      startTime: op.startTime,
      endTime: op.endTime,
      durationMillis: op.startTime !== undefined && op.endTime !== undefined ? op.endTime - op.startTime : undefined,
      status: op.failureReason !== undefined ? "failed" : op.endTime === undefined ? "running" : "succeeded",
      failureReason: op.failureReason,
    }))
    return {
      ...this.view(b),
      batchMillis: this.batchMillis,
      inputs: Object.values(b.inputs),
      outputOperations,
    }
  }

  /** The charts' series over the retained batches (times in ms, delays in ms, rates in records/s). */
  timeline() {
    const retained = this.retained()
    const n = retained.length
    const times = new Array<number>(n)
    const inputRate = new Array<number>(n)
    const schedulingDelay = new Array<number | null>(n)
    const processingTime = new Array<number | null>(n)
    const totalDelay = new Array<number | null>(n)
    const failed = new Array<boolean>(n)
    const perInput: Record<number, Array<number>> = {}
    for (const s of this.inputs.values()) perInput[s.streamId] = new Array<number>(n).fill(0)
    for (let i = 0; i < n; i++) {
      const b = retained[i]
      const v = this.view(b)
      times[i] = b.batchTime
      inputRate[i] = b.numRecords * 1000 / this.batchMillis
      schedulingDelay[i] = v.schedulingDelay ?? null
      processingTime[i] = v.processingDelay ?? null
      totalDelay[i] = v.totalDelay ?? null
      failed[i] = b.failed
      for (const info of Object.values(b.inputs)) {
        const series = perInput[info.streamId] ??= new Array<number>(n).fill(0)
        series[i] = info.numRecords * 1000 / this.batchMillis
      }
    }
    return {
      batchIntervalMillis: this.batchMillis,
      times,
      inputRate,
      schedulingDelay,
      processingTime,
      totalDelay,
      failed,
      perInput,
      active: this.active.size,
      completed: n,
    }
  }

  /** Per-input rows (receivers with their status; direct inputs too). */
  receivers() {
    const retained = this.retained()
    const restarts = this.graph === undefined
      ? new Map<number, { readonly restarts: number }>()
      : receiverRestarts(this.graph)
    return [...this.inputs.values()].sort((a, b) => a.streamId - b.streamId).map((s) => {
      let records = 0
      for (const b of retained) records += b.inputs[s.streamId]?.numRecords ?? 0
      return {
        streamId: s.streamId,
        name: s.name,
        kind: s.kind,
        receiver: s.receiver,
        status: s.receiver ? (s.active ? "ACTIVE" : "INACTIVE") : this.stopTime === undefined ? "DIRECT" : "STOPPED",
        restarts: restarts.get(s.streamId)?.restarts ?? 0,
        errors: s.errors,
        lastErrorTime: s.lastErrorTime,
        lastErrorMessage: s.lastErrorMessage,
        avgRate: retained.length === 0 ? 0 : records * 1000 / (retained.length * this.batchMillis),
      }
    })
  }

  /** Keyed state per stateful stream. */
  state() {
    const graph = this.graph
    if (graph === undefined) return { checkpointDirectory: undefined, checkpointIntervalMillis: undefined, streams: [] }
    return {
      checkpointDirectory: this.checkpointDirectory(),
      checkpointIntervalMillis: this.checkpointDirectory() === undefined ? undefined : checkpointInterval(graph),
      lastCheckpointTime: this.lastCheckpoint?.time,
      lastCheckpointMillis: this.lastCheckpoint?.millis,
      streams: stateNodes(graph).map((n) => ({
        id: n.id,
        kind: n.kind,
        name: n.checkpointName,
        keys: n.state.size,
        approximateBytes: approximateBytes(n.state),
        lastBatchTime: n.lastTime,
        checkpointIntervalMillis: n.checkpointMillis,
      })),
    }
  }

  /** Committed offsets per partition of each direct Kafka input, and the rebalances seen. */
  kafka() {
    const graph = this.graph
    const inputs = graph === undefined ? [] : kafkaInputs(graph).map((input) => {
      const last = this.lastOffsets(input.streamId)
      const partitions = input.assignment().map((tp) => {
        const key = `${tp.topic}-${tp.partition}`
        let committed: number | undefined
        for (const c of input.committed.values()) {
          if (c.topic === tp.topic && c.partition === tp.partition) committed = c.offset
        }
        const until = last.get(key)
        const high = this.highWatermarks.get(`${input.streamId} ${tp.topic} ${tp.partition}`)
        return {
          topic: tp.topic,
          partition: tp.partition,
          committedOffset: committed,
          processedOffset: until,
          uncommitted: until !== undefined && committed !== undefined ? Math.max(0, until - committed) : undefined,
          highWatermark: high,
          lag: high === undefined ? undefined : Math.max(0, high - (committed ?? until ?? 0)),
        }
      }).sort((a, b) => a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition)
      return { streamId: input.streamId, name: input.name, partitions }
    })
    return { inputs, rebalances: [...this.rebalances].reverse() }
  }

  /** The newest `untilOffset` per partition in the retained batches' Kafka metadata. */
  private lastOffsets(streamId: number): Map<string, number> {
    const out = new Map<string, number>()
    const retained = this.retained()
    for (let i = retained.length - 1; i >= 0; i--) {
      const offsets = retained[i].inputs[streamId]?.metadata?.offsets
      if (!Array.isArray(offsets)) continue
      for (const r of offsets as ReadonlyArray<{ topic: string; partition: number; untilOffset: number }>) {
        const key = `${r.topic}-${r.partition}`
        if (!out.has(key)) out.set(key, r.untilOffset)
      }
      if (out.size > 0) break
    }
    return out
  }

  /** The DStream graph. */
  graphView(): { readonly nodes: ReadonlyArray<DagNode> } {
    return { nodes: this.graph === undefined ? [] : dag(this.graph) }
  }

  /** Sizes of the internal tables (for the bounded-memory test). */
  sizes() {
    return {
      completed: this.completed.length,
      byTime: this.byTime.size,
      active: this.active.size,
      rebalances: this.rebalances.length,
    }
  }
}
