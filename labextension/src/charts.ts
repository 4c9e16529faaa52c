/**
 * Time-series charts with uPlot, themed with JupyterLab's CSS variables (so they follow the
 * light and dark themes): one line per series (a replica), a legend, the unit on the y axis.
 */
import uPlot from 'uplot';

import { attrs, el } from './dom';

/** One line: its label (a node id) and its points (unix seconds, value). */
export interface Series {
  label: string;
  points: [number, number][];
}

/** The value of a `--jp-*` variable on the page (a theme change shows at the next redraw). */
export function cssVar(name: string, fallback = ''): string {
  return getComputedStyle(document.body).getPropertyValue(name).trim() || fallback;
}

const PALETTE = [
  '--jp-brand-color1',
  '--jp-warn-color1',
  '--jp-success-color1',
  '--jp-error-color1',
  '--jp-accent-color1',
  '--jp-brand-color3',
  '--jp-warn-color3'
];

function colour(index: number): string {
  return cssVar(PALETTE[index % PALETTE.length], '#1976d2');
}

/** Align series on one x axis (null where a series has no sample at a time). */
export function align(series: Series[]): uPlot.AlignedData {
  const tables = series.map(s => {
    const points = [...s.points].sort((a, b) => a[0] - b[0]);
    return [points.map(p => p[0]), points.map(p => p[1])] as uPlot.AlignedData;
  });
  return tables.length === 1 ? tables[0] : uPlot.join(tables);
}

/** A compact number with its unit (1.2 k, 35 %, 512 MiB). */
export function formatValue(value: number | null, unit: string): string {
  if (value === null || value === undefined || Number.isNaN(value)) {
    return '–';
  }
  const abs = Math.abs(value);
  const text = abs >= 1000 ? `${(value / 1000).toFixed(1)} k` : abs >= 10 ? value.toFixed(0) : value.toPrecision(2);
  return unit ? `${text} ${unit}` : text;
}

/** A chart of some series, redrawn in place by `set` (re-made when its series change). */
export class Chart {
  readonly node: HTMLElement;
  private readonly box = el('div', 'jp-LiveML-chartBox');
  private plot: uPlot | null = null;
  private labels = '';
  /** The x range drawn: the samples' span, at least a minute (one sample would span years). */
  private xRange: [number, number] = [0, 1];

  constructor(
    readonly title: string,
    readonly unit: string
  ) {
    const heading = el('div', 'jp-LiveML-chartTitle', unit ? `${title} (${unit})` : title);
    this.node = attrs(el('div', 'jp-LiveML-chart', heading, this.box), {
      role: 'figure',
      'aria-label': title
    });
  }

  /** Show these series (sorted by label), keeping the chart when its lines are the same. */
  set(series: Series[], width: number): void {
    const sorted = [...series].sort((a, b) => a.label.localeCompare(b.label));
    const labels = sorted.map(s => s.label).join('\n');
    const data = align(sorted);
    const xs = data[0] as number[];
    const [min, max] = [xs[0] ?? 0, xs[xs.length - 1] ?? 1];
    this.xRange = max - min < 60 ? [max - 60, max + 5] : [min, max];
    if (this.plot && labels === this.labels) {
      this.plot.setData(data);
      return;
    }
    this.plot?.destroy();
    this.labels = labels;
    this.plot = new uPlot(this.options(sorted, width), data, this.box);
  }

  resize(width: number): void {
    this.plot?.setSize({ width, height: this.plot.height });
  }

  private options(series: Series[], width: number): uPlot.Options {
    const text = cssVar('--jp-ui-font-color2', '#616161');
    const grid = cssVar('--jp-border-color2', '#e0e0e0');
    const font = `11px ${cssVar('--jp-ui-font-family', 'sans-serif')}`;
    const axis = { stroke: text, font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 } };
    const unit = this.unit;
    return {
      width,
      height: 180,
      legend: { show: true, live: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => this.xRange },
        y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.15 : 1] } },
      axes: [
        { ...axis },
        { ...axis, size: 56, values: (_u, ticks) => ticks.map(t => formatValue(t, '')) }
      ],
      series: [
        { label: 'time' },
        ...series.map((s, i) => ({
          label: s.label,
          stroke: colour(i),
          width: 1.5,
          spanGaps: true,
          points: { show: s.points.length <= 40, size: 4 },
          value: (_u: uPlot, v: number | null) => formatValue(v, unit)
        }))
      ]
    };
  }

  dispose(): void {
    this.plot?.destroy();
    this.plot = null;
  }
}
