/**
 * The checkpoint directory's guards (file-system store only):
 *
 * - **Lock** (`<dir>/.lock`): the running context owns the directory. The lock file holds the
 *   owner's pid, host, start time and a random token, and is created atomically with its
 *   content (written to a temp file, fsynced, then hard-linked to `.lock`, which fails if it
 *   exists), so it is never seen empty. A lock whose owner is a dead process on this host
 *   (`kill(pid, 0)` fails with `ESRCH`) is stale and taken over with a warning, under a second
 *   lock (`.lock.takeover`) so that two processes taking over at once cannot both win. A lock
 *   held on another host is never taken over (its owner cannot be checked from here). The lock
 *   is released (deleted if still ours) when the context's scope closes.
 * - **Used marker** (`.<name>.effect-dstream` beside the directory): written once the first
 *   checkpoint is durable, it says "this directory held checkpoints". It survives the deletion
 *   of the directory, so `getOrCreate` can refuse a silent fresh start when the checkpoints are
 *   gone. Not writable (e.g. the directory is a mount point in a read-only parent): a warning,
 *   and that protection is off. Checkpoint markers in the directory's write-ahead logs are
 *   evidence too (the checkpoint files were deleted, the logs kept).
 *
 * `process.pid`, `process.kill(pid, 0)` and `os.hostname()` come from `node:process` / `node:os`:
 * effect has no service for them.
 * @internal
 */
import { Effect, FileSystem, Option, Path, type Scope } from "effect"
import type { PlatformError } from "effect/PlatformError"
import * as os from "node:os"
import process from "node:process"
import { CheckpointError, CheckpointLockedError, CheckpointMissingError, type LockOwner } from "../Checkpoint.ts"
import { randomSuffix, syncDirectory } from "./files.ts"
import { decodeSegment } from "./wal.ts"

/** The lock file's name inside the checkpoint directory. @internal */
export const lockFileName = ".lock"

interface LockContent extends LockOwner {
  readonly token: string
}

/** Tokens of the locks held by contexts of this process (a same-pid lock not here is stale). */
const heldTokens = new Set<string>()

/** A held lock. @internal */
export interface DirectoryLock {
  readonly file: string
  readonly owner: LockOwner
  /** Fails unless the lock file still names this owner (the directory may have been deleted). */
  readonly verify: Effect.Effect<void, CheckpointError>
}

/** This host's name; `undefined` when the runtime may not read it (Deno without `--allow-sys`). */
const hostName = (): string | undefined => {
  try {
    return os.hostname()
  } catch {
    return undefined
  }
}

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return !(error instanceof Error && "code" in error && error.code === "ESRCH")
  }
}

const parse = (bytes: Uint8Array): LockContent | undefined => {
  try {
    const c = JSON.parse(new TextDecoder().decode(bytes))
    return typeof c?.pid === "number" && typeof c.host === "string" && typeof c.since === "string" &&
        typeof c.token === "string"
      ? { pid: c.pid, host: c.host, since: c.since, token: c.token }
      : undefined
  } catch {
    return undefined
  }
}

/**
 * Takes the lock of `directory` (which exists) for the calling scope; fails with
 * `CheckpointLockedError` naming the owner when a live context holds it.
 * @internal
 */
export const acquire = (
  directory: string,
  fileMode: number,
): Effect.Effect<
  DirectoryLock,
  CheckpointError | CheckpointLockedError,
  FileSystem.FileSystem | Path.Path | Scope.Scope
> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const file = path.join(directory, lockFileName)
    const guard = `${file}.takeover`
    const fail = (message: string) => (cause: PlatformError) =>
      new CheckpointError({ location: directory, message: `${message}: ${cause.message}`, cause })
    const host = hostName()
    const mine: LockContent = {
      pid: process.pid,
      host: host ?? "(unknown)",
      since: new Date().toISOString(),
      token: randomSuffix() + randomSuffix(),
    }
    const owner: LockOwner = { pid: mine.pid, host: mine.host, since: mine.since }

    /** Creates `target` holding `mine`, atomically; `false` when it exists. */
    const create = (target: string): Effect.Effect<boolean, CheckpointError> => {
      const temp = `${target}.tmp-${randomSuffix()}`
      return Effect.scoped(Effect.gen(function* () {
        const handle = yield* fs.open(temp, { flag: "wx", mode: fileMode })
        yield* handle.writeAll(new TextEncoder().encode(JSON.stringify(mine) + "\n"))
        yield* handle.sync
      })).pipe(
        Effect.andThen(fs.link(temp, target)),
        Effect.andThen(syncDirectory(fs, directory)),
        Effect.as(true),
        Effect.catchIf((e) => e.reason._tag === "AlreadyExists", () => Effect.succeed(false)),
        Effect.ensuring(Effect.ignore(fs.remove(temp, { force: true }))),
        Effect.mapError(fail(`Cannot create the lock file "${target}"`)),
      )
    }
    /** The content of `target`; `None` when it does not exist. */
    const read = (target: string): Effect.Effect<Option.Option<LockContent>, CheckpointError> =>
      fs.readFile(target).pipe(
        Effect.flatMap((bytes) => {
          const content = parse(bytes)
          return content === undefined
            ? Effect.fail(
              new CheckpointError({
                location: directory,
                message:
                  `Cannot read the lock file "${target}": it is not an effect-dstream lock; delete it if no context uses "${directory}"`,
              }),
            )
            : Effect.succeed(Option.some(content))
        }),
        Effect.catchIf(
          (e): e is PlatformError => !(e instanceof CheckpointError) && e.reason._tag === "NotFound",
          () => Effect.succeed(Option.none()),
        ),
        Effect.mapError((e) => e instanceof CheckpointError ? e : fail(`Cannot read the lock file "${target}"`)(e)),
      )
    // only an owner on this (known) host can be checked
    const isStale = (c: LockContent): boolean =>
      host !== undefined && c.host === host && (c.pid === mine.pid ? !heldTokens.has(c.token) : !isAlive(c.pid))
    const lockedBy = (c: LockContent) =>
      new CheckpointLockedError({ directory, lockFile: file, owner: { pid: c.pid, host: c.host, since: c.since } })

    for (let attempt = 0;; attempt++) {
      if (attempt > 10) {
        return yield* new CheckpointError({
          location: directory,
          message: `Cannot take the lock "${file}": it keeps changing hands`,
        })
      }
      if (yield* create(file)) break
      const current = yield* read(file)
      if (Option.isNone(current)) continue // released meanwhile: try again
      const stale = current.value
      if (!isStale(stale) || attempt >= 3) return yield* lockedBy(stale)
      // Take the stale lock over, under the takeover guard.
      if (!(yield* create(guard))) {
        const other = yield* read(guard)
        if (Option.isSome(other) && !isStale(other.value)) return yield* lockedBy(other.value)
        yield* Effect.mapError(fs.remove(guard, { force: true }), fail(`Cannot remove "${guard}"`))
        continue
      }
      const again = yield* read(file)
      if (Option.isSome(again) && again.value.token === stale.token) {
        yield* Effect.logWarning(
          `Taking over the lock of checkpoint directory "${directory}" from process ${stale.pid} on host "${stale.host}" (since ${stale.since}): that process is gone`,
        )
        yield* Effect.mapError(fs.remove(file), fail(`Cannot remove the stale lock file "${file}"`))
      }
      yield* Effect.mapError(fs.remove(guard, { force: true }), fail(`Cannot remove "${guard}"`))
    }
    heldTokens.add(mine.token)
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        heldTokens.delete(mine.token)
        const current = yield* Effect.orElseSucceed(read(file), () => Option.none<LockContent>())
        if (Option.isSome(current) && current.value.token === mine.token) {
          yield* Effect.ignore(fs.remove(file))
        }
      })
    )
    const verify = Effect.gen(function* () {
      const current = yield* read(file)
      if (Option.isSome(current) && current.value.token === mine.token) return
      const exists = yield* Effect.orElseSucceed(fs.exists(directory), () => true)
      return yield* new CheckpointError({
        location: directory,
        message: !exists
          ? `The checkpoint directory "${directory}" disappeared while the context was running (its checkpoints and write-ahead logs are gone)`
          : Option.isSome(current)
          ? `The lock of checkpoint directory "${directory}" was taken by process ${current.value.pid} on host "${current.value.host}" while this context was running`
          : `The lock file "${file}" was deleted while this context was running`,
      })
    })
    return { file, owner, verify }
  })

/** The used marker of `directory`: a hidden file beside it. @internal */
export const markerFile = (path: Path.Path, directory: string): string => {
  const dir = path.resolve(directory)
  return path.join(path.dirname(dir), `.${path.basename(dir)}.effect-dstream`)
}

/**
 * Writes the used marker of `directory` unless it exists (a failure is a warning).
 * @internal
 */
export const markUsed = (
  directory: string,
  fileMode: number,
): Effect.Effect<void, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const marker = markerFile(path, directory)
    if (yield* Effect.orElseSucceed(fs.exists(marker), () => false)) return
    const body = JSON.stringify({
      directory: path.resolve(directory),
      since: new Date().toISOString(),
      note:
        "effect-dstream wrote checkpoints into this directory; getOrCreate refuses to start from nothing while this file exists and the checkpoints are gone",
    })
    const parent = path.dirname(marker)
    const temp = path.join(parent, `${path.basename(marker)}.tmp-${randomSuffix()}`)
    yield* Effect.scoped(Effect.gen(function* () {
      const handle = yield* fs.open(temp, { flag: "wx", mode: fileMode })
      yield* handle.writeAll(new TextEncoder().encode(body + "\n"))
      yield* handle.sync
    })).pipe(
      Effect.andThen(fs.rename(temp, marker)),
      Effect.andThen(syncDirectory(fs, parent)),
      Effect.onError(() => Effect.ignore(fs.remove(temp, { force: true }))),
      Effect.catch((error) =>
        Effect.logWarning(
          `Cannot write the marker "${marker}" beside checkpoint directory "${directory}" (${error.message}): if the directory is deleted, getOrCreate will not notice that its checkpoints are gone`,
        )
      ),
    )
  })

/**
 * The write-ahead logs of `directory` (`receivedData/<streamId>/log-*`), if one records a
 * checkpoint marker: evidence that checkpoints existed even without the marker beside.
 */
const walEvidence = (
  directory: string,
): Effect.Effect<string | undefined, never, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const received = path.join(directory, "receivedData")
    for (const stream of yield* fs.readDirectory(received)) {
      const logDir = path.join(received, stream)
      for (const name of (yield* fs.readDirectory(logDir)).filter((n) => n.startsWith("log-")).sort()) {
        for (const { record } of decodeSegment(yield* fs.readFile(path.join(logDir, name))).records) {
          if (record._tag === "Checkpointed") {
            return `the write-ahead log "${logDir}" records a checkpoint of batch ${record.time}`
          }
        }
      }
    }
    return undefined
  }).pipe(Effect.orElseSucceed(() => undefined))

/**
 * `getOrCreate` found no checkpoint in `directory`: fails with `CheckpointMissingError` when the
 * used marker beside it, or a checkpoint marker in its write-ahead logs, shows checkpoints
 * existed, unless `allowFreshStart` (then the used marker is removed with a warning).
 * @internal
 */
export const checkNotLost = (
  directory: string,
  allowFreshStart: boolean,
): Effect.Effect<void, CheckpointError | CheckpointMissingError, FileSystem.FileSystem | Path.Path> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const path = yield* Path.Path
    const marker = markerFile(path, directory)
    const exists = yield* fs.exists(marker).pipe(
      Effect.mapError((cause) =>
        new CheckpointError({ location: directory, message: `Cannot check "${marker}": ${cause.message}`, cause })
      ),
    )
    const evidence = exists ? `the marker "${marker}" says so` : yield* walEvidence(directory)
    if (evidence === undefined) return
    if (!allowFreshStart) return yield* new CheckpointMissingError({ directory, evidence })
    yield* Effect.logWarning(
      `Checkpoint directory "${directory}" held checkpoints before (${evidence}) and now has none; starting from nothing as allowFreshStart asks`,
    )
    if (exists) yield* Effect.ignore(fs.remove(marker))
  })
