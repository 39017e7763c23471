/**
 * Durable file operations for checkpoints, the write-ahead log and the checkpoint directory's
 * lock, on effect's `FileSystem` (which has everything needed: `open` with a flag and a mode,
 * `File.sync` = fsync, and a directory opened read-only can be fsynced on Linux and macOS).
 *
 * A file is durable once its bytes are fsynced; a new name (a created or renamed file, a created
 * directory) is durable once the directory holding it is fsynced. So:
 * - {@link writeFileDurably}: temp file (created exclusively with the mode) → write → fsync →
 *   close → rename over the target → fsync the directory;
 * - {@link makeDirectoryDurably}: create the missing directories with the mode, then fsync the
 *   parent of each one created;
 * - {@link syncDirectory}: fsync one directory (after creating or deleting a file in it).
 * @internal
 */
import { Effect, type FileSystem, type Path } from "effect"
import type { PlatformError } from "effect/PlatformError"

/** fsyncs `directory`, making the creation, rename or removal of its entries durable. @internal */
export const syncDirectory = (
  fs: FileSystem.FileSystem,
  directory: string,
): Effect.Effect<void, PlatformError> =>
  Effect.scoped(Effect.flatMap(fs.open(directory, { flag: "r" }), (dir) => dir.sync))

/**
 * Creates `directory` and its missing parents with `mode` (the umask can only remove bits), then
 * fsyncs the parent of every directory it created, so the new entries survive a power loss.
 * @internal
 */
export const makeDirectoryDurably = (
  fs: FileSystem.FileSystem,
  path: Path.Path,
  directory: string,
  mode: number,
): Effect.Effect<void, PlatformError> =>
  Effect.gen(function* () {
    const missing: Array<string> = []
    let dir = path.resolve(directory)
    while (!(yield* fs.exists(dir))) {
      missing.push(dir)
      const parent = path.dirname(dir)
      if (parent === dir) break
      dir = parent
    }
    if (missing.length === 0) return
    yield* fs.makeDirectory(directory, { recursive: true, mode })
    for (const created of missing) yield* syncDirectory(fs, path.dirname(created))
  })

/** A short random suffix for temp file names. @internal */
export const randomSuffix = (): string => Math.random().toString(36).slice(2, 10)

/**
 * Writes `bytes` to `file` atomically and durably: a hidden temp file beside it, created
 * exclusively with `mode`, written and fsynced, renamed over `file`, then the directory fsynced.
 * A reader sees the old content or the new one; once this returns, the new one survives a crash.
 * @internal
 */
export const writeFileDurably = (
  fs: FileSystem.FileSystem,
  path: Path.Path,
  file: string,
  bytes: Uint8Array,
  mode: number,
): Effect.Effect<void, PlatformError> => {
  const directory = path.dirname(file)
  const temp = path.join(directory, `.${path.basename(file)}.tmp-${randomSuffix()}`)
  return Effect.scoped(Effect.gen(function* () {
    const handle = yield* fs.open(temp, { flag: "wx", mode })
    yield* handle.writeAll(bytes)
    yield* handle.sync
  })).pipe(
    Effect.andThen(fs.rename(temp, file)),
    Effect.andThen(syncDirectory(fs, directory)),
    Effect.onError(() => Effect.ignore(fs.remove(temp, { force: true }))),
  )
}
