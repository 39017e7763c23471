// The Streaming page: polls /api/snapshot every second and draws it with uPlot.
"use strict"
;(function () {
  const app = document.getElementById("app")
  const tooltip = document.getElementById("tooltip")
  const live = document.getElementById("live")

  // ---- formatting ----------------------------------------------------------------------------
  const esc = (s) =>
    String(s ?? "").replace(
      /[&<>"']/g,
      (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c],
    )
  const pad = (n, w = 2) => String(n).padStart(w, "0")
  const fmtTime = (ms) => {
    if (ms === undefined || ms === null) return "-"
    const d = new Date(ms)
    return `${d.getFullYear()}/${pad(d.getMonth() + 1)}/${pad(d.getDate())} ${pad(d.getHours())}:${
      pad(d.getMinutes())
    }:${pad(d.getSeconds())}${ms % 1000 === 0 ? "" : "." + pad(ms % 1000, 3)}`
  }
  const fmtDuration = (ms) => {
    if (ms === undefined || ms === null) return "-"
    if (ms < 1000) return `${Math.round(ms)} ms`
    const s = ms / 1000
    if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`
    const m = Math.floor(s / 60)
    if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`
    const h = Math.floor(m / 60)
    return `${h} h ${m - h * 60} min`
  }
  const fmtNum = (n, digits = 0) =>
    n === undefined || n === null ? "-" : Number(n).toLocaleString("en-US", { maximumFractionDigits: digits })
  const fmtBytes = (b) => {
    if (b === undefined || b === null) return "-"
    const units = ["B", "KiB", "MiB", "GiB", "TiB"]
    let i = 0
    while (b >= 1024 && i < units.length - 1) {
      b /= 1024
      i++
    }
    return `${b.toFixed(i === 0 ? 0 : 1)} ${units[i]}`
  }
  // Spark normalises the delay charts to one unit chosen from the largest value.
  const unitFor = (maxMs) =>
    maxMs < 1000
      ? { name: "ms", div: 1 }
      : maxMs < 60_000
      ? { name: "s", div: 1000 }
      : maxMs < 3_600_000
      ? { name: "min", div: 60_000 }
      : { name: "h", div: 3_600_000 }

  const get = (url) => fetch(url, { cache: "no-store" }).then((r) => r.ok ? r.json() : Promise.reject(r.status))

  // ---- tooltip -------------------------------------------------------------------------------
  const showTip = (text, x, y) => {
    tooltip.textContent = text
    tooltip.hidden = false
    tooltip.style.left = `${x + 12}px`
    tooltip.style.top = `${y - 28}px`
  }
  const hideTip = () => (tooltip.hidden = true)

  // ---- charts --------------------------------------------------------------------------------
  const charts = {}
  const view = { delayMax: 1, rateMax: 1, unit: unitFor(0), histMax: 1, interval: 1000, data: null }

  const stablePlugin = (axis) => ({
    hooks: {
      draw: (u) => {
        const v = view.interval / view.unit.div
        const ctx = u.ctx
        const { left, top, width, height } = u.bbox
        const pos = Math.round(u.valToPos(v, axis, true))
        if (pos < top || pos > top + height) return
        ctx.save()
        ctx.strokeStyle = "#8250df"
        ctx.setLineDash([6, 4])
        ctx.lineWidth = 1.5 * devicePixelRatio
        ctx.beginPath()
        ctx.moveTo(left, pos)
        ctx.lineTo(left + width, pos)
        ctx.stroke()
        ctx.setLineDash([])
        ctx.fillStyle = "#8250df"
        ctx.font = `${11 * devicePixelRatio}px sans-serif`
        ctx.fillText("stable", left + width - 42 * devicePixelRatio, pos - 4 * devicePixelRatio)
        ctx.restore()
      },
    },
  })

  const timelineTip = (key, unitOf) => ({
    hooks: {
      setCursor: (u) => {
        const i = u.cursor.idx
        const d = view.data
        if (i === null || i === undefined || !d || d.times[i] === undefined) return hideTip()
        const raw = key === "inputRate"
          ? d.inputRate[i]
          : key.startsWith("input:")
          ? d.perInput[key.slice(6)][i]
          : d[key][i]
        if (raw === null || raw === undefined) return hideTip()
        const rect = u.over.getBoundingClientRect()
        const unit = unitOf()
        const value = unit === "records/sec" ? fmtNum(raw, 2) : fmtNum(raw / view.unit.div, 2)
        showTip(
          `${value} ${unit} at ${fmtTime(d.times[i])}${d.failed[i] ? " (failed)" : ""}`,
          rect.left + u.cursor.left,
          rect.top + u.cursor.top,
        )
      },
    },
  })

  const makeTimeline = (el, key, opts) => {
    const plugins = [timelineTip(key, opts.unit)]
    if (opts.stable) plugins.push(stablePlugin("y"))
    const u = new uPlot(
      {
        width: 500,
        height: 150,
        legend: { show: false },
        cursor: { points: { size: 7 }, drag: { x: false, y: false } },
        scales: { x: { time: true }, y: { range: () => [0, opts.max() * 1.05 || 1] } },
        axes: [
          { stroke: "#656d76", grid: { stroke: "#eaeef2" }, ticks: { stroke: "#d0d7de" }, space: 120 },
          {
            stroke: "#656d76",
            grid: { stroke: "#eaeef2" },
            ticks: { stroke: "#d0d7de" },
            size: 52,
            splits: (_u, _ax, min, max) => [0, 1, 2, 3, 4].map((k) => min + (max - min) * k / 4),
            values: (_u, splits) => splits.map((v) => fmtNum(v, v < 10 ? 1 : 0)),
          },
        ],
        series: [
          {},
          { stroke: "#0969da", width: 1.5, fill: "rgba(9,105,218,0.08)", points: { show: false }, spanGaps: false },
          {
            stroke: "#cf222e",
            fill: "#cf222e",
            width: 0,
            paths: () => null,
            points: { show: true, size: 8, fill: "#cf222e" },
          },
        ],
        plugins,
      },
      [[], [], []],
      el,
    )
    u.over.addEventListener("mouseleave", hideTip)
    u.over.addEventListener("click", () => {
      const i = u.cursor.idx
      if (i !== null && i !== undefined && view.data) highlightBatch(view.data.times[i])
    })
    return u
  }

  const makeHistogram = (el, opts) => {
    const plugins = [{
      hooks: {
        setCursor: (u) => {
          const i = u.cursor.idx
          const h = u.__hist
          if (i === null || i === undefined || !h) return hideTip()
          const rect = u.over.getBoundingClientRect()
          const unit = opts.unit()
          const a = h.edges[i], b = h.edges[i + 1]
          const fa = unit === "records/sec" ? fmtNum(a, 1) : fmtNum(a / view.unit.div, 2)
          const fb = unit === "records/sec" ? fmtNum(b, 1) : fmtNum(b / view.unit.div, 2)
          const pct = h.total === 0 ? 0 : (100 * h.counts[i]) / h.total
          showTip(
            `${h.counts[i]} batches (${pct.toFixed(1)}%) between ${fa} and ${fb} ${unit}`,
            rect.left + u.cursor.left,
            rect.top + u.cursor.top,
          )
        },
      },
    }]
    if (opts.stable) plugins.push(stablePlugin("x"))
    const u = new uPlot(
      {
        width: 300,
        height: 150,
        legend: { show: false },
        cursor: { points: { show: false }, drag: { x: false, y: false } },
        scales: {
          x: { time: false, ori: 1, dir: 1, range: () => [0, opts.max() * 1.05 || 1] },
          y: { ori: 0, dir: 1, range: () => [0, Math.max(1, view.histMax)] },
        },
        axes: [
          { scale: "x", side: 3, stroke: "#656d76", grid: { show: false }, size: 10, values: () => [] },
          {
            scale: "y",
            side: 0,
            stroke: "#656d76",
            grid: { stroke: "#eaeef2" },
            label: "#batches",
            labelSize: 16,
            size: 30,
          },
        ],
        series: [
          {},
          {
            stroke: "#0969da",
            fill: "rgba(9,105,218,0.45)",
            width: 1,
            paths: uPlot.paths.bars({ size: [0.92, Infinity], align: 0 }),
            points: { show: false },
          },
        ],
        plugins,
      },
      [[], []],
      el,
    )
    u.over.addEventListener("mouseleave", hideTip)
    return u
  }

  const histogram = (values, max) => {
    const bins = 10
    const width = (max * 1.05 || 1) / bins
    const counts = new Array(bins).fill(0)
    let total = 0
    for (const v of values) {
      if (v === null || v === undefined) continue
      counts[Math.min(bins - 1, Math.floor(v / width))]++
      total++
    }
    const edges = counts.map((_, i) => i * width).concat([bins * width])
    return { centers: counts.map((_, i) => (i + 0.5) * width), counts, edges, total }
  }

  const failedPoints = (values, failed) => values.map((v, i) => (failed[i] ? v : null))

  // ---- main page -----------------------------------------------------------------------------
  let sortKey = "batchTime"
  let sortDir = -1
  let showInputs = true

  const mainSkeleton = () => {
    app.innerHTML = `
      <h2>Streaming Statistics</h2>
      <div id="status-line" class="muted"></div>
      <table class="stats" id="stats">
        <thead><tr><th></th><th>Timelines <span id="timeline-caption" class="muted"></span></th><th>Histograms</th></tr></thead>
        <tbody>
          <tr id="row-inputRate"><td class="metric"><div class="name">Input Rate</div><div id="receivers-summary"></div><div id="avg-inputRate"></div><div class="toggle" id="toggle-inputs"></div></td>
            <td class="chart timeline"><div id="chart-inputRate"></div></td><td class="chart"><div id="hist-inputRate"></div></td></tr>
          <tr id="inputs-row"><td colspan="3"><table id="receivers-table"><thead><tr><th>Input</th><th>Status</th><th class="num">Avg rate</th><th class="num">Restarts</th><th>Last error time</th><th>Last error</th><th>Timeline</th><th>Histogram</th></tr></thead><tbody></tbody></table></td></tr>
          <tr id="row-schedulingDelay"><td class="metric"><div class="name">Scheduling Delay</div><div id="avg-schedulingDelay"></div><div class="muted" style="font-size:12px">Time waiting for earlier batches</div></td>
            <td class="chart timeline"><div id="chart-schedulingDelay"></div></td><td class="chart"><div id="hist-schedulingDelay"></div></td></tr>
          <tr id="row-processingTime"><td class="metric"><div class="name">Processing Time</div><div id="avg-processingTime"></div><div class="muted" style="font-size:12px">Time to process all jobs of a batch</div></td>
            <td class="chart timeline"><div id="chart-processingTime"></div></td><td class="chart"><div id="hist-processingTime"></div></td></tr>
          <tr id="row-totalDelay"><td class="metric"><div class="name">Total Delay</div><div id="avg-totalDelay"></div></td>
            <td class="chart timeline"><div id="chart-totalDelay"></div></td><td class="chart"><div id="hist-totalDelay"></div></td></tr>
        </tbody>
      </table>
      <h3 id="active-title">Active Batches</h3>
      <table id="active-batches"><thead><tr><th>Batch time</th><th class="num">Records</th><th class="num">Scheduling delay</th><th class="num">Processing time</th><th>Output ops: succeeded/total</th><th>Status</th><th>Error</th></tr></thead><tbody></tbody></table>
      <h3 id="completed-title">Completed Batches</h3>
      <table id="completed-batches"><thead><tr>
        <th class="sortable" data-key="batchTime">Batch time</th><th class="sortable num" data-key="numRecords">Records</th>
        <th class="sortable num" data-key="schedulingDelay">Scheduling delay</th><th class="sortable num" data-key="processingDelay">Processing time</th>
        <th class="sortable num" data-key="totalDelay">Total delay</th><th>Output ops: succeeded/total</th><th>Error</th></tr></thead><tbody></tbody></table>
      <h3>Keyed state</h3>
      <div id="state-summary" class="muted"></div>
      <table id="state-table"><thead><tr><th>Stateful stream</th><th class="num">Keys</th><th class="num">Approx. size</th><th>Last batch</th><th class="num">Checkpoint interval</th></tr></thead><tbody></tbody></table>
      <div id="kafka-panel"></div>
      <h3>DStream graph</h3>
      <div id="dag" class="dag"></div>`
    document.querySelectorAll("#completed-batches th.sortable").forEach((th) =>
      th.addEventListener("click", () => {
        const key = th.dataset.key
        sortDir = sortKey === key ? -sortDir : -1
        sortKey = key
        if (lastSnapshot) renderCompleted(lastSnapshot.batches.completed)
      })
    )
    document.getElementById("toggle-inputs").addEventListener("click", () => {
      showInputs = !showInputs
      if (lastSnapshot) renderInputs(lastSnapshot)
    })
    const delayUnit = () => view.unit.name
    const rate = () => "records/sec"
    charts.inputRate = makeTimeline(document.getElementById("chart-inputRate"), "inputRate", {
      unit: rate,
      max: () => view.rateMax,
    })
    charts.inputRateHist = makeHistogram(document.getElementById("hist-inputRate"), {
      unit: rate,
      max: () => view.rateMax,
    })
    for (const key of ["schedulingDelay", "processingTime", "totalDelay"]) {
      const stable = key === "processingTime"
      const max = () => view.delayMax / view.unit.div
      charts[key] = makeTimeline(document.getElementById(`chart-${key}`), key, { unit: delayUnit, max, stable })
      charts[key + "Hist"] = makeHistogram(document.getElementById(`hist-${key}`), {
        unit: delayUnit,
        max,
        stable,
      })
    }
    get("/api/graph").then(renderDag).catch(() => {})
  }

  let lastSnapshot = null
  const inputCharts = new Map()

  const renderMain = (s) => {
    lastSnapshot = s
    const st = s.status
    const t = s.timeline
    view.data = t
    view.interval = t.batchIntervalMillis
    let delayMax = view.interval
    for (const series of [t.schedulingDelay, t.processingTime, t.totalDelay]) {
      for (const v of series) if (v !== null && v > delayMax) delayMax = v
    }
    view.delayMax = delayMax
    view.unit = unitFor(delayMax)
    let rateMax = 0
    for (const v of t.inputRate) if (v > rateMax) rateMax = v
    view.rateMax = rateMax || 1

    document.getElementById("status-line").innerHTML = st.startTime === undefined
      ? "Not started yet"
      : `${st.running ? "Running" : "Ran"} batches of <b>${fmtDuration(st.batchIntervalMillis)}</b> for <b>${
        fmtDuration(st.uptimeMillis)
      }</b> since <b>${fmtTime(st.startTime)}</b> (<b id="completed-count">${
        fmtNum(st.completedBatches)
      }</b> completed batches, <b id="records-count">${fmtNum(st.totalRecords)}</b> records)${
        st.failedBatches > 0 ? `, <span class="bad"><b>${st.failedBatches}</b> failed</span>` : ""
      }${st.running ? "" : ` — <b>stopped</b> at ${fmtTime(st.stopTime)}`}`
    document.getElementById("timeline-caption").textContent = `(last ${
      t.completed + t.active
    } batches, ${t.active} active, ${t.completed} completed)`
    document.getElementById("receivers-summary").textContent =
      `Receivers: ${st.receivers.active} / ${st.receivers.total} active`
    const avg = st.averages
    document.getElementById("avg-inputRate").textContent = `Avg: ${fmtNum(avg.inputRate, 2)} records/sec`
    document.getElementById("avg-schedulingDelay").textContent = `Avg: ${fmtDuration(avg.schedulingDelay)}`
    document.getElementById("avg-processingTime").textContent = `Avg: ${fmtDuration(avg.processingTime)}`
    document.getElementById("avg-totalDelay").textContent = `Avg: ${fmtDuration(avg.totalDelay)}`

    const xs = t.times.map((ms) => ms / 1000)
    const scale = (arr) => arr.map((v) => (v === null ? null : v / view.unit.div))
    charts.inputRate.setData([xs, t.inputRate, failedPoints(t.inputRate, t.failed)])
    const hists = { inputRate: histogram(t.inputRate, view.rateMax) }
    for (const key of ["schedulingDelay", "processingTime", "totalDelay"]) {
      const vals = scale(t[key])
      charts[key].setData([xs, vals, failedPoints(vals, t.failed)])
      hists[key] = histogram(t[key], delayMax)
    }
    view.histMax = Math.max(...Object.values(hists).map((h) => Math.max(...h.counts)))
    for (const key of Object.keys(hists)) {
      const h = hists[key]
      const chart = charts[key + "Hist"]
      chart.__hist = h
      const centers = key === "inputRate" ? h.centers : h.centers.map((c) => c / view.unit.div)
      chart.setData([centers, h.counts])
    }
    renderInputs(s)
    renderActive(s.batches.active)
    document.getElementById("completed-title").textContent =
      `Completed Batches (last ${s.batches.completed.length} out of ${fmtNum(s.batches.totalCompleted)})`
    renderCompleted(s.batches.completed)
    renderState(s.state)
    renderKafka(s.kafka)
  }

  const renderInputs = (s) => {
    const row = document.getElementById("inputs-row")
    document.getElementById("toggle-inputs").textContent = showInputs ? "▾ hide inputs" : "▸ show inputs"
    row.hidden = !showInputs
    const tbody = document.querySelector("#receivers-table tbody")
    const t = s.timeline
    const xs = t.times.map((ms) => ms / 1000)
    let max = 1
    for (const r of s.receivers) for (const v of t.perInput[r.streamId] ?? []) if (v > max) max = v
    for (const r of s.receivers) {
      let tr = tbody.querySelector(`tr[data-stream="${r.streamId}"]`)
      if (!tr) {
        tr = document.createElement("tr")
        tr.dataset.stream = r.streamId
        tr.innerHTML =
          `<td class="name"></td><td class="status"></td><td class="num rate"></td><td class="num restarts"></td><td class="err-time"></td><td class="err"></td><td class="chart"><div></div></td><td class="chart"><div></div></td>`
        tbody.appendChild(tr)
        const [tl, hs] = tr.querySelectorAll("td.chart div")
        const c = { max: 1, timeline: null, hist: null }
        const opts = { unit: () => "records/sec", max: () => c.max }
        c.timeline = makeTimeline(tl, `input:${r.streamId}`, opts)
        c.hist = makeHistogram(hs, opts)
        c.timeline.setSize({ width: 320, height: 100 })
        c.hist.setSize({ width: 200, height: 100 })
        inputCharts.set(r.streamId, c)
      }
      tr.querySelector(".name").innerHTML = `${esc(r.name)}<div class="muted" style="font-size:12px">${
        esc(r.kind)
      }</div>`
      const statusCell = tr.querySelector(".status")
      statusCell.textContent = r.status
      statusCell.className = "status" + (r.status === "INACTIVE" ? " bad" : "")
      tr.querySelector(".rate").textContent = `${fmtNum(r.avgRate, 2)} records/sec`
      tr.querySelector(".restarts").textContent = r.receiver ? String(r.restarts) : "-"
      tr.querySelector(".err-time").textContent = r.lastErrorTime ? fmtTime(r.lastErrorTime) : "-"
      const msg = r.lastErrorMessage ?? ""
      tr.querySelector(".err").innerHTML = msg
        ? `<span class="error" title="${esc(msg)}">${esc(msg.length > 100 ? msg.slice(0, 100) + "…" : msg)}</span>`
        : "-"
      const c = inputCharts.get(r.streamId)
      c.max = max
      const series = t.perInput[r.streamId] ?? []
      c.timeline.setData([xs, series, failedPoints(series, t.failed)])
      const h = histogram(series, max)
      c.hist.__hist = h
      c.hist.setData([h.centers, h.counts])
    }
  }

  const opsCell = (o) => {
    const total = Math.max(o.total, o.succeeded + o.failed, 1)
    return `<div class="progress"><div class="done" style="width:${
      (100 * o.succeeded) / total
    }%"></div><div class="fail" style="left:${(100 * o.succeeded) / total}%;width:${
      (100 * o.failed) / total
    }%"></div><span>${o.succeeded}/${o.total}${o.failed ? ` (${o.failed} failed)` : ""}</span></div>`
  }
  const errorCell = (b) =>
    b.failureReason
      ? `<details><summary class="bad">${
        esc(b.failureReason.split("\n")[0].slice(0, 100))
      }</summary><div class="error">${esc(b.failureReason)}</div></details>`
      : "-"
  const batchLink = (t) => `<a href="/batches/${t}">${fmtTime(t)}</a>`

  const renderActive = (active) => {
    document.getElementById("active-title").textContent = `Active Batches (${active.length})`
    document.querySelector("#active-batches tbody").innerHTML =
      active.map((b) =>
        `<tr id="batch-${b.batchTime}" data-time="${b.batchTime}" class="${b.status}"><td>${
          batchLink(b.batchTime)
        }</td><td class="num">${fmtNum(b.numRecords)}</td><td class="num">${
          fmtDuration(b.schedulingDelay)
        }</td><td class="num">${b.status === "processing" ? "running" : "-"}</td><td>${
          opsCell(b.outputOps)
        }</td><td class="status-${b.status}">${b.status}</td><td>${errorCell(b)}</td></tr>`
      ).join("") || `<tr><td colspan="7" class="muted">No active batches</td></tr>`
  }

  const renderCompleted = (completed) => {
    const rows = completed.slice().sort((a, b) => {
      const x = a[sortKey] ?? -1, y = b[sortKey] ?? -1
      return (x - y) * sortDir || b.batchTime - a.batchTime
    })
    document.querySelector("#completed-batches tbody").innerHTML =
      rows.map((b) =>
        `<tr id="batch-${b.batchTime}" data-time="${b.batchTime}" class="${b.status}"><td>${
          batchLink(b.batchTime)
        }</td><td class="num">${fmtNum(b.numRecords)}</td><td class="num">${
          fmtDuration(b.schedulingDelay)
        }</td><td class="num">${fmtDuration(b.processingDelay)}</td><td class="num">${
          fmtDuration(b.totalDelay)
        }</td><td>${opsCell(b.outputOps)}</td><td>${errorCell(b)}</td></tr>`
      ).join("") || `<tr><td colspan="7" class="muted">No completed batches yet</td></tr>`
    if (highlighted) {
      const tr = document.getElementById(`batch-${highlighted}`)
      if (tr) tr.classList.add("highlight")
    }
  }

  let highlighted = null
  const highlightBatch = (time) => {
    const tr = document.getElementById(`batch-${time}`)
    if (!tr) return
    highlighted = time
    tr.scrollIntoView({ block: "center", behavior: "smooth" })
    tr.classList.add("highlight")
    setTimeout(() => {
      if (highlighted === time) highlighted = null
      const row = document.getElementById(`batch-${time}`)
      if (row) row.classList.remove("highlight")
    }, 3000)
  }

  const renderState = (state) => {
    const summary = document.getElementById("state-summary")
    summary.innerHTML = state.checkpointDirectory === undefined
      ? "No checkpoint directory set."
      : `Checkpoints every ${fmtDuration(state.checkpointIntervalMillis)} to <code>${
        esc(state.checkpointDirectory)
      }</code>; last ${
        state.lastCheckpointTime === undefined
          ? "not written yet"
          : `after batch ${fmtTime(state.lastCheckpointTime)}, about <span id="checkpoint-millis">${
            fmtDuration(state.lastCheckpointMillis)
          }</span>`
      }.`
    document.querySelector("#state-table tbody").innerHTML =
      state.streams.map((n) =>
        `<tr data-node="${n.id}"><td>${esc(n.kind)}${
          n.name ? ` <span class="muted">"${esc(n.name)}"</span>` : ""
        }</td><td class="num keys">${fmtNum(n.keys)}</td><td class="num">${fmtBytes(n.approximateBytes)}</td><td>${
          fmtTime(n.lastBatchTime)
        }</td><td class="num">${fmtDuration(n.checkpointIntervalMillis)}</td></tr>`
      ).join("") || `<tr><td colspan="5" class="muted">No stateful streams</td></tr>`
  }

  const renderKafka = (kafka) => {
    const el = document.getElementById("kafka-panel")
    if (kafka.inputs.length === 0) {
      el.innerHTML = ""
      return
    }
    el.innerHTML = `<h3>Kafka</h3>` +
      kafka.inputs.map((k) =>
        `<div><b>${
          esc(k.name)
        }</b></div><table class="kafka"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">Committed offset</th><th class="num">Processed up to</th><th class="num">Processed, not committed</th><th class="num">High-water mark</th><th class="num">Lag</th></tr></thead><tbody>${
          k.partitions.map((p) =>
            `<tr><td>${esc(p.topic)}</td><td class="num">${p.partition}</td><td class="num">${
              fmtNum(p.committedOffset)
            }</td><td class="num">${fmtNum(p.processedOffset)}</td><td class="num">${
              fmtNum(p.uncommitted)
            }</td><td class="num">${fmtNum(p.highWatermark)}</td><td class="num lag">${fmtNum(p.lag)}</td></tr>`
          ).join("") || `<tr><td colspan="7" class="muted">No partitions assigned</td></tr>`
        }</tbody></table>`
      ).join("") +
      `<div><b>Rebalances</b> (assignment changes seen at batch ends)</div><table><thead><tr><th>Batch</th><th>Input</th><th>Assigned</th><th>Added</th><th>Revoked</th></tr></thead><tbody>${
        kafka.rebalances.map((r) =>
          `<tr><td>${fmtTime(r.batchTime)}</td><td>${esc(r.input)}</td><td>${esc(r.assigned.join(", "))}</td><td>${
            esc(r.added.join(", "))
          }</td><td>${esc(r.revoked.join(", "))}</td></tr>`
        ).join("") || `<tr><td colspan="5" class="muted">None</td></tr>`
      }</tbody></table>`
  }

  const renderDag = (graph) => {
    const el = document.getElementById("dag")
    const cols = []
    for (const n of graph.nodes) (cols[n.depth] ??= []).push(n)
    el.innerHTML = `<svg></svg>` +
      cols.map((col) =>
        `<div class="col">${
          col.map((n) =>
            `<div class="node ${n.role}${/State/.test(n.kind) ? " stateful" : ""}" id="dag-${n.id}" data-kind="${
              esc(n.kind)
            }"><div class="kind">${esc(n.kind)}</div>${n.label ? `<div class="label">${esc(n.label)}</div>` : ""}</div>`
          ).join("")
        }</div>`
      ).join("")
    const svg = el.querySelector("svg")
    const box = el.getBoundingClientRect()
    svg.setAttribute("width", el.scrollWidth)
    svg.setAttribute("height", el.scrollHeight)
    const ns = "http://www.w3.org/2000/svg"
    svg.innerHTML =
      `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8c959f"/></marker></defs>`
    for (const n of graph.nodes) {
      const to = document.getElementById(`dag-${n.id}`).getBoundingClientRect()
      for (const p of n.parents) {
        const fromEl = document.getElementById(`dag-${p}`)
        if (!fromEl) continue
        const from = fromEl.getBoundingClientRect()
        const line = document.createElementNS(ns, "path")
        const x1 = from.right - box.left + el.scrollLeft, y1 = from.top + from.height / 2 - box.top
        const x2 = to.left - box.left + el.scrollLeft, y2 = to.top + to.height / 2 - box.top
        const mx = (x1 + x2) / 2
        line.setAttribute("d", `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`)
        line.setAttribute("fill", "none")
        line.setAttribute("stroke", "#8c959f")
        line.setAttribute("stroke-width", "1.5")
        line.setAttribute("marker-end", "url(#arrow)")
        line.dataset.edge = `${p}-${n.id}`
        svg.appendChild(line)
      }
    }
  }

  // ---- batch page ----------------------------------------------------------------------------
  const renderBatch = (b) => {
    const inputs = b.inputs.map((i) => {
      const offsets = i.metadata && Array.isArray(i.metadata.offsets) ? i.metadata.offsets : null
      const meta = offsets
        ? `<table class="offsets"><thead><tr><th>Topic</th><th class="num">Partition</th><th class="num">From offset</th><th class="num">Until offset</th><th class="num">Records</th></tr></thead><tbody>${
          offsets.map((r) =>
            `<tr><td>${esc(r.topic)}</td><td class="num">${r.partition}</td><td class="num">${
              fmtNum(r.fromOffset)
            }</td><td class="num">${fmtNum(r.untilOffset)}</td><td class="num">${
              fmtNum(r.untilOffset - r.fromOffset)
            }</td></tr>`
          ).join("")
        }</tbody></table>`
        : i.metadata && i.metadata.description
        ? `<pre>${esc(i.metadata.description)}</pre>`
        : i.metadata
        ? `<pre>${esc(JSON.stringify(i.metadata, null, 1))}</pre>`
        : "-"
      return `<tr><td>${esc(i.name)} <span class="muted">[${i.streamId}]</span></td><td class="num">${
        fmtNum(i.numRecords)
      }</td><td>${meta}</td></tr>`
    }).join("")
    const ops = b.outputOperations.map((o) =>
      `<tr class="${o.status}" data-op="${o.id}"><td class="num">${o.id}</td><td>${esc(o.name)}</td><td class="num">${
        fmtDuration(o.durationMillis)
      }</td><td class="${o.status === "failed" ? "status-failed" : ""}">${
        o.status === "failed" ? "Failed" : o.status === "running" ? "Running" : "Succeeded"
      }</td><td>${
        o.failureReason
          ? `<details open><summary class="bad">Failed due to: ${
            esc(o.failureReason.split("\n")[0].slice(0, 120))
          }</summary><div class="error">${esc(o.failureReason)}</div></details>`
          : "-"
      }</td></tr>`
    ).join("")
    app.innerHTML = `
      <p><a href="/">← Streaming</a></p>
      <h2 id="batch-title">Details of batch at ${fmtTime(b.batchTime)}</h2>
      <table class="kv" id="batch-summary">
        <tr><td>Batch duration</td><td>${fmtDuration(b.batchMillis)}</td></tr>
        <tr><td>Status</td><td class="${b.status === "failed" ? "status-failed" : ""}">${esc(b.status)}</td></tr>
        <tr><td>Input size</td><td id="batch-records">${fmtNum(b.numRecords)} records</td></tr>
        <tr><td>Submitted</td><td>${fmtTime(b.submissionTime)}</td></tr>
        <tr><td>Scheduling delay</td><td>${fmtDuration(b.schedulingDelay)}</td></tr>
        <tr><td>Processing time</td><td>${fmtDuration(b.processingDelay)}</td></tr>
        <tr><td>Total delay</td><td>${fmtDuration(b.totalDelay)}</td></tr>
        <tr><td>Output operations</td><td>${b.outputOps.succeeded} succeeded, ${b.outputOps.failed} failed, ${b.outputOps.total} in all</td></tr>
      </table>
      <h3>Input metadata</h3>
      <table id="batch-inputs"><thead><tr><th>Input</th><th class="num">Records</th><th>Metadata</th></tr></thead><tbody>${
      inputs || `<tr><td colspan="3" class="muted">No inputs</td></tr>`
    }</tbody></table>
      <h3>Output operations</h3>
      <table id="batch-outputs"><thead><tr><th class="num">Id</th><th>Description</th><th class="num">Duration</th><th>Status</th><th>Failure reason</th></tr></thead><tbody>${
      ops || `<tr><td colspan="5" class="muted">No output operation ran</td></tr>`
    }</tbody></table>`
  }

  // ---- routing and polling -------------------------------------------------------------------
  const batchMatch = location.pathname.match(/^\/batches\/(\d+)$/)
  const tick = async () => {
    try {
      if (batchMatch) {
        const b = await get(`/api/batches/${batchMatch[1]}`)
        renderBatch(b)
        if (b.status === "completed" || b.status === "failed") return setLive(true, false)
      } else {
        renderMain(await get("/api/snapshot"))
      }
      setLive(true, true)
    } catch (e) {
      if (batchMatch && e === 404) {
        app.innerHTML = `<p><a href="/">← Streaming</a></p><p class="bad">No batch at ${
          esc(batchMatch[1])
        }: it is not active nor among the retained completed batches.</p>`
        return setLive(false, false)
      }
      setLive(false, true)
    }
  }
  const setLive = (ok, again) => {
    live.classList.toggle("stale", !ok)
    live.textContent = ok ? "● live" : "● offline"
    if (again) setTimeout(tick, 1000)
  }
  if (!batchMatch) mainSkeleton()
  tick()
})()
