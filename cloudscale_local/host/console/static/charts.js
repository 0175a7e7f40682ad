// Small hand-written SVG line charts: one polyline per series over the last WINDOW seconds.
// No library: each chart is a few lines of numbers, redrawn once a second (docs/tradeoffs.md).
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const WINDOW = 60;
const COLOURS = ["#3f5f9a", "#c0392b", "#1f7a4d", "#b7791f", "#7b4ba0", "#2a8a99", "#8e5b3d", "#5d6b7f"];

class LineChart {
  /** A chart titled `title` in `parent`; `unit` follows each value in the legend. */
  constructor(parent, id, title, unit) {
    this.unit = unit;
    this.series = new Map();
    this.root = document.createElement("article");
    this.root.className = "chart";
    this.root.id = id;
    const heading = document.createElement("h2");
    heading.textContent = title;
    this.scale = document.createElement("div");
    this.scale.className = "scale";
    this.svg = document.createElementNS(SVG, "svg");
    this.svg.setAttribute("viewBox", `0 0 ${WINDOW - 1} 100`);
    this.svg.setAttribute("preserveAspectRatio", "none");
    this.svg.setAttribute("role", "img");
    this.svg.setAttribute("aria-label", title);
    this.legend = document.createElement("ul");
    this.legend.className = "legend";
    this.root.append(heading, this.scale, this.svg, this.legend);
    parent.append(this.root);
  }

  /** Add this second's values ({name: number|null}); a series seen before but absent now gets 0. */
  push(values) {
    for (const name of Object.keys(values)) {
      if (!this.series.has(name)) this.addSeries(name);
    }
    for (const [name, line] of this.series) {
      const value = values[name];
      line.points.push(typeof value === "number" ? value : null);
      if (line.points.length > WINDOW) line.points.shift();
      line.value.textContent = typeof value === "number" ? format(value, this.unit) : "–";
    }
    this.draw();
  }

  addSeries(name) {
    const colour = COLOURS[this.series.size % COLOURS.length];
    const path = document.createElementNS(SVG, "polyline");
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", colour);
    path.setAttribute("stroke-width", "2");
    path.setAttribute("vector-effect", "non-scaling-stroke");
    this.svg.append(path);
    const item = document.createElement("li");
    item.style.setProperty("--colour", colour);
    item.textContent = name;
    const value = document.createElement("span");
    value.className = "value";
    item.append(value);
    this.legend.append(item);
    // Earlier seconds had none of it: zeros, so the line starts where the others are.
    const width = this.series.size ? this.series.values().next().value.points.length : 0;
    this.series.set(name, { path, value, points: new Array(width).fill(0) });
  }

  draw() {
    let top = 0;
    for (const line of this.series.values()) {
      for (const point of line.points) if (point !== null && point > top) top = point;
    }
    top = niceCeiling(top);
    this.scale.textContent = `max ${format(top, this.unit)}`;
    // Until a whole window has passed, the seconds so far are spread over the chart's width.
    let count = 0;
    for (const line of this.series.values()) count = Math.max(count, line.points.length);
    const step = (WINDOW - 1) / Math.max(count - 1, 1);
    for (const line of this.series.values()) {
      const offset = count - line.points.length;
      const coordinates = [];
      line.points.forEach((point, index) => {
        if (point === null) return;
        coordinates.push(`${((offset + index) * step).toFixed(2)},${(100 - (point / top) * 96 - 2).toFixed(2)}`);
      });
      line.path.setAttribute("points", coordinates.join(" "));
    }
  }
}

function niceCeiling(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (value <= step * power) return step * power;
  return 10 * power;
}

function format(value, unit) {
  const digits = value >= 100 || Number.isInteger(value) ? 0 : value >= 10 ? 1 : 2;
  return `${value.toFixed(digits)}${unit}`;
}

window.LineChart = LineChart;
