// A time-series chart of one resource, on uPlot. It draws what
// GET /v2/panel/things/{id}/series/{key} answers: one line of values, or, when the server
// downsampled the range into buckets, the average as a line with the min..max spread as a band.
// Live values are inserted in time order. The container keeps `data-points` (points drawn) and
// `data-updated` (ISO datetime of the newest point) current.

import uPlot from './vendor/uPlot.esm.js';

const HEIGHT = 220;
const HEIGHT_SMALL = 180;

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function colors() {
  return {
    line: cssVar('--chart-line', '#0b62d6'),
    minmax: cssVar('--chart-minmax', '#7aa7e6'),
    band: cssVar('--chart-band', 'rgba(11,98,214,0.15)'),
    axis: cssVar('--chart-axis', '#444'),
    grid: cssVar('--chart-grid', 'rgba(0,0,0,0.08)'),
  };
}

const numFmt = new Intl.NumberFormat(undefined, { maximumFractionDigits: 6 });
const fmt = (v) => (v === null || v === undefined || Number.isNaN(v) ? '—' : numFmt.format(v));

/** Index of the first element of sorted `arr` greater than `x`. */
function upperBound(arr, x) {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (arr[mid] <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * `container`: the element the chart lives in (its width is the chart's). `opts.label`: the
 * series name; `opts.range()`: the current {start, end} in ms (the x axis always shows it);
 * `opts.onZoom(start, end)`: called after a drag-selection on the plot.
 */
export function createChart(container, opts) {
  const data = { t: [], min: [], max: [], avg: [], downsampled: false };
  let plot = null;
  let builtFor = null; // the downsampled flag the current uPlot was built for
  const plotEl = document.createElement('div');
  plotEl.className = 'chart-plot';
  const emptyEl = document.createElement('p');
  emptyEl.className = 'chart-empty muted';
  container.append(plotEl, emptyEl);

  function width() {
    return Math.max(200, Math.floor(plotEl.clientWidth || container.clientWidth || 600));
  }

  function height() {
    return window.matchMedia('(max-width: 640px)').matches ? HEIGHT_SMALL : HEIGHT;
  }

  function build() {
    if (plot) plot.destroy();
    const c = colors();
    const axis = {
      stroke: c.axis,
      grid: { stroke: c.grid, width: 1 },
      ticks: { stroke: c.grid, width: 1 },
      font: '12px system-ui, sans-serif',
    };
    const series = [{ value: (u, v) => (v == null ? '—' : new Date(v).toLocaleString()) }];
    let bands;
    if (data.downsampled) {
      series.push(
        { label: 'min', stroke: c.minmax, width: 1, value: (u, v) => fmt(v), points: { show: false } },
        { label: 'max', stroke: c.minmax, width: 1, value: (u, v) => fmt(v), points: { show: false } },
        { label: `${opts.label} (avg)`, stroke: c.line, width: 2, value: (u, v) => fmt(v) },
      );
      bands = [{ series: [2, 1], fill: c.band }];
    } else {
      series.push({ label: opts.label, stroke: c.line, width: 2, value: (u, v) => fmt(v) });
    }
    plot = new uPlot(
      {
        width: width(),
        height: height(),
        ms: 1,
        scales: {
          x: {
            time: true,
            range: () => {
              const r = opts.range();
              return [r.start, r.end];
            },
          },
        },
        axes: [{ ...axis }, { ...axis, size: 60, values: (u, vals) => vals.map(fmt) }],
        series,
        bands,
        cursor: { drag: { x: true, y: false, setScale: false } },
        legend: { live: true },
        hooks: {
          setSelect: [
            (u) => {
              const w = u.select.width;
              if (w < 4) return;
              const a = u.posToVal(u.select.left, 'x');
              const b = u.posToVal(u.select.left + w, 'x');
              u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
              if (opts.onZoom) opts.onZoom(Math.round(a), Math.round(b));
            },
          ],
        },
      },
      arrays(),
      plotEl,
    );
    builtFor = data.downsampled;
  }

  function arrays() {
    return data.downsampled ? [data.t, data.min, data.max, data.avg] : [data.t, data.avg];
  }

  function render() {
    if (!plot || builtFor !== data.downsampled) build();
    else plot.setData(arrays());
    const n = data.t.length;
    container.dataset.points = String(n);
    container.dataset.updated = n ? new Date(data.t[n - 1]).toISOString() : '';
    container.dataset.downsampled = String(data.downsampled);
    emptyEl.textContent = n ? '' : 'No numeric values in this range.';
  }

  const onTheme = () => plot && build();
  const mq = window.matchMedia('(prefers-color-scheme: dark)');
  mq.addEventListener('change', onTheme);

  let lastW = 0;
  const ro = new ResizeObserver(() => {
    const w = width();
    if (plot && w !== lastW) {
      lastW = w;
      plot.setSize({ width: w, height: height() });
    }
  });
  ro.observe(container);

  return {
    /** The chart's width in CSS pixels: the `points` to ask the server for. */
    width,
    /** Replaces the data with a series answer. */
    setSeries(res) {
      data.t = (res.t || []).slice();
      data.min = (res.min || []).slice();
      data.max = (res.max || []).slice();
      data.avg = (res.avg || []).slice();
      data.downsampled = !!res.downsampled;
      render();
    },
    /** Inserts one live value (ms, number) in time order (false: that point is already drawn). */
    append(ms, v) {
      const i = upperBound(data.t, ms);
      if (i > 0 && data.t[i - 1] === ms && data.avg[i - 1] === v) return false; // already there
      data.t.splice(i, 0, ms);
      data.min.splice(i, 0, v);
      data.max.splice(i, 0, v);
      data.avg.splice(i, 0, v);
      render();
      return true;
    },
    /** Redraws after the range changed without new data (the sliding live window). */
    redraw() {
      if (plot) plot.setData(arrays());
    },
    get points() {
      return data.t.length;
    },
    destroy() {
      ro.disconnect();
      mq.removeEventListener('change', onTheme);
      if (plot) plot.destroy();
      plot = null;
    },
  };
}
