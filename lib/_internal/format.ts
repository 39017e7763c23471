/** Element formatting for `print`, modelled on Scala's `toString`. @internal */
import { Option } from "effect"

const hasOwnToString = (u: object): boolean => {
  const proto = Object.getPrototypeOf(u)
  return proto !== null && proto !== Object.prototype && "toString" in u && typeof u.toString === "function" &&
    u.toString !== Object.prototype.toString
}

/**
 * Scala-style rendering: tuples (arrays) as `(a,b)`, `Option` as `Some(x)` / `None`,
 * strings and numbers as themselves, plain objects as JSON.
 * @internal
 */
export const formatElement = (u: unknown): string => {
  switch (typeof u) {
    case "string":
      return u
    case "number":
    case "boolean":
    case "bigint":
    case "symbol":
      return String(u)
    case "undefined":
      return "undefined"
    case "function":
      return "<function>"
  }
  if (u === null) return "null"
  if (Array.isArray(u)) return "(" + u.map(formatElement).join(",") + ")"
  if (Option.isOption(u)) return Option.isSome(u) ? `Some(${formatElement(u.value)})` : "None"
  if (u instanceof Map) {
    return "Map(" + Array.from(u, ([k, v]) => `${formatElement(k)} -> ${formatElement(v)}`).join(", ") + ")"
  }
  if (u instanceof Set) return "Set(" + Array.from(u, formatElement).join(", ") + ")"
  if (u instanceof Date) return u.toISOString()
  if (hasOwnToString(u as object)) return String(u)
  try {
    return JSON.stringify(u)
  } catch {
    return String(u)
  }
}

/** Spark's `print(num)` block for one batch. @internal */
export const formatPrintBlock = (time: number, batch: ReadonlyArray<unknown>, num: number): string => {
  const dashes = "-------------------------------------------"
  let out = `${dashes}\nTime: ${time} ms\n${dashes}\n`
  const n = Math.min(num, batch.length)
  for (let i = 0; i < n; i++) out += formatElement(batch[i]) + "\n"
  if (batch.length > num) out += "...\n"
  return out + "\n"
}
