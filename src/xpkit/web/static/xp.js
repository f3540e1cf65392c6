// xp ui: the few things a server-rendered page cannot do by itself.
"use strict";

const ACTIVE = ["queued", "running"];

function json(url) {
  return fetch(url, { credentials: "same-origin" }).then((r) => {
    if (!r.ok) throw new Error(url + ": " + r.status);
    return r.json();
  });
}

function setStatus(run, status) {
  document.querySelectorAll(".status[data-run]").forEach((el) => {
    if (el.dataset.run === run && el.textContent !== status) {
      el.textContent = status;
      el.className = "status status-" + status;
    }
  });
}

// Runs table: statuses of queued and running runs follow live.
function followStatuses() {
  const active = [...document.querySelectorAll("#runs-table .status[data-run]")]
    .filter((el) => ACTIVE.includes(el.textContent)).map((el) => el.dataset.run);
  if (!active.length) return;
  const query = active.map((r) => "run=" + encodeURIComponent(r)).join("&");
  json("/api/status?" + query).then((found) => {
    for (const [run, status] of Object.entries(found)) setStatus(run, status);
  }).finally(() => setTimeout(followStatuses, 2000));
}

// Runs table: the Compare button works with 2 to 10 selected runs.
function compareSelection() {
  const form = document.getElementById("compare-form");
  const button = document.getElementById("compare-button");
  if (!form || !button) return;
  form.addEventListener("change", () => {
    const n = form.querySelectorAll("input[name=run]:checked").length;
    button.disabled = n < 2 || n > 10;
    button.textContent = n ? "Compare " + n : "Compare";
  });
}

// Run page: output.log, followed while the run is active.
function followLog() {
  const log = document.getElementById("log");
  if (!log) return;
  let offset = -1;
  const poll = () => {
    json("/api/runs/" + encodeURIComponent(log.dataset.run) + "/log?offset=" + offset)
      .then((data) => {
        const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 20;
        if (data.text) log.append(document.createTextNode(data.text));
        if (atBottom) log.scrollTop = log.scrollHeight;
        offset = data.offset;
        setStatus(log.dataset.run, data.status);
        if (ACTIVE.includes(data.status)) setTimeout(poll, 1000);
        else if (!log.textContent) log.textContent = "(no output)";
      })
      .catch(() => setTimeout(poll, 3000));
  };
  poll();
}

// Charts: one line per run, thinned on the server; zooming asks for the full data
// of the visible range.
function smooth(ys, weight) {
  if (!weight) return ys;
  let last = null;
  return ys.map((y) => {
    if (y === null) return null;
    last = last === null ? y : last * weight + (1 - weight) * y;
    return last;
  });
}

function setupChart(el) {
  const runs = el.dataset.runs.split(" ");
  const metric = el.dataset.metric;
  const box = el.closest(".chart-box");
  const logToggle = box.querySelector(".log-toggle");
  const smoothing = box.querySelector(".smoothing");
  const width = Math.max(400, Math.round(el.clientWidth || 800));
  let series = [];

  const fetchAll = (range) => Promise.all(runs.map((run) => {
    let url = "/api/runs/" + encodeURIComponent(run) + "/metrics/" +
      encodeURIComponent(metric) + "?points=" + 2 * width;
    if (range) url += "&x0=" + range[0] + "&x1=" + range[1];
    return json(url).catch(() => ({ x: [], y: [], total: 0 }));
  }));

  const traces = () => {
    const weight = parseFloat(smoothing.value);
    const out = [];
    series.forEach((s, i) => {
      const name = runs.length > 1 ? runs[i] : metric;
      out.push({ x: s.x, y: s.y, name: name, mode: s.x.length > 1 ? "lines" : "markers",
                 type: "scatter", opacity: weight ? 0.25 : 1, legendgroup: name });
      if (weight) out.push({ x: s.x, y: smooth(s.y, weight), name: name + " (smoothed)",
                             mode: "lines", type: "scatter", legendgroup: name });
    });
    return out;
  };

  const layout = (range) => ({
    margin: { l: 50, r: 10, t: 10, b: 35 }, height: 300,
    hovermode: "x unified", showlegend: runs.length > 1,
    xaxis: range ? { title: { text: "step" }, range: range }
                 : { title: { text: "step" }, autorange: true },
    yaxis: { type: logToggle.checked ? "log" : "linear", autorange: true },
  });

  let busy = false;
  const draw = (range) => {
    busy = true;
    return Plotly.react(el, traces(), layout(range), { responsive: true, displaylogo: false })
      .then(() => { busy = false; el.dataset.ready = "1"; });
  };

  fetchAll(null).then((found) => { series = found; return draw(null); }).then(() => {
    el.on("plotly_relayout", (event) => {
      if (busy) return;
      let range = null;
      if ("xaxis.range[0]" in event) range = [event["xaxis.range[0]"], event["xaxis.range[1]"]];
      else if (event["xaxis.range"]) range = event["xaxis.range"];
      else if (!event["xaxis.autorange"]) return;
      el.dataset.ready = "";
      fetchAll(range).then((found) => { series = found; draw(range); });
    });
  });
  logToggle.addEventListener("change", () => draw(el.layout && el.layout.xaxis.autorange ? null : el.layout.xaxis.range));
  smoothing.addEventListener("input", () => draw(el.layout && el.layout.xaxis.autorange ? null : el.layout.xaxis.range));
}

// Run page: the packages table filters as you type.
function packageFilter() {
  const input = document.getElementById("package-filter");
  if (!input) return;
  input.addEventListener("input", () => {
    const text = input.value.toLowerCase();
    document.querySelectorAll("#packages tr").forEach((tr) => {
      tr.hidden = text && !tr.textContent.toLowerCase().includes(text);
    });
  });
}

// Run page: a large diff's files load when opened.
function lazyDiffs() {
  document.querySelectorAll("details.diff-part[data-diff-url]").forEach((el) => {
    el.addEventListener("toggle", () => {
      if (!el.open || el.dataset.loaded) return;
      el.dataset.loaded = "1";
      json(el.dataset.diffUrl).then((part) => {
        el.querySelector(".diff-body").innerHTML = part.html;  // pygments output: escaped text
      });
    });
  });
}

// Experiment page of a search: parallel coordinates of the finished trials (each axis
// scaled to its range, best trials darkest) and every trial's value by trial number.
// Drawn as SVG lines: Plotly's parcoords needs WebGL through regl, which compiles its
// shaders with `new Function`, and this dashboard's CSP forbids eval.
function searchCharts() {
  const data = document.getElementById("search-data");
  if (!data || !window.Plotly) return;
  const search = JSON.parse(data.textContent);
  const names = search.parallel.axes.map((a) => a.name);
  const lines = search.parallel.lines;
  const shade = (rank) => {  // dark blue (best) to yellow (worst)
    const t = lines.length > 1 ? rank / (lines.length - 1) : 0;
    const mix = (a, b) => Math.round(a + (b - a) * t);
    return `rgb(${mix(68, 253)}, ${mix(1, 231)}, ${mix(84, 37)})`;
  };
  const traces = lines.map((line, rank) => ({
    x: names, y: line.y, type: "scatter", mode: "lines+markers", showlegend: false,
    line: { color: shade(rank), width: rank === 0 ? 3 : 1.5 }, marker: { size: 5 },
    name: `trial ${line.key}`,
    hovertemplate: `trial ${line.key} (${line.run})<br>${search.metric} ${line.value}<extra></extra>`,
  })).reverse();
  const label = (v) => (typeof v === "number" ? Number(v.toPrecision(3)) : v);
  const annotations = search.parallel.axes.flatMap((axis) => [
    { x: axis.name, y: 0, text: String(label(axis.low)), showarrow: false, yshift: -12 },
    { x: axis.name, y: 1, text: String(label(axis.high)), showarrow: false, yshift: 12 },
  ]);
  const config = { responsive: true, displaylogo: false };
  const mark = (id) => () => { document.getElementById(id).dataset.ready = "1"; };
  Plotly.newPlot("search-parallel", traces, {
    margin: { l: 30, r: 30, t: 30, b: 35 }, height: 320, hovermode: "closest", annotations,
    yaxis: { visible: false, range: [-0.1, 1.1] }, xaxis: { type: "category" },
  }, config).then(mark("search-parallel"));
  const shown = (status) => {
    const trials = search.trials.filter((t) => t.status === status && t.value !== null);
    return { x: trials.map((t) => t.key), y: trials.map((t) => t.value), text: trials.map((t) => t.run),
             mode: "markers", type: "scatter", name: status };
  };
  Plotly.newPlot("search-history", [shown("finished"), shown("pruned")], {
    margin: { l: 50, r: 10, t: 10, b: 35 }, height: 280, hovermode: "closest",
    xaxis: { title: { text: "trial" } }, yaxis: { title: { text: search.metric } },
  }, config).then(mark("search-history"));
}

document.addEventListener("DOMContentLoaded", () => {
  searchCharts();
  followStatuses();
  compareSelection();
  followLog();
  packageFilter();
  lazyDiffs();
  if (window.Plotly) document.querySelectorAll(".chart").forEach(setupChart);
});
