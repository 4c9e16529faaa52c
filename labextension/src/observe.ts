/**
 * The "Logs & Metrics" tab of a deployment's page: a log search (time range, query language,
 * columns, pages, download) and charts of host, inference-container and request metrics per
 * replica, refreshed every few seconds while the tab is visible.
 */
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import type { LogPage, MetricKind, MetricSample } from './api';
import { Chart, type Series } from './charts';
import type { DeploymentModel } from './deployment';
import { attrs, button, cellText, el, Form, formatTime, input, Notice, select, table } from './dom';
import type { LogSearch, TimeRange } from './service';

/** How often replicas report (the control plane's metrics interval) and the charts refresh. */
const SAMPLE_SECONDS = 5;
/** Columns a log record may have (liveml_ext/observability/logstore.py); the first five by default. */
const LOG_COLUMNS = ['time', 'level', 'node_id', 'logger', 'message', 'release', 'traceback', 'fields', 'deployment_rid'];
const DEFAULT_COLUMNS = LOG_COLUMNS.slice(0, 5);

/** What a chart shows: one metric (liveml_ext/observability/metrics.py UNITS) of one kind. */
interface MetricSpec {
  kind: MetricKind;
  name: string;
  title: string;
  unit: string;
  scale?: number;
}

const METRICS: MetricSpec[] = [
  { kind: 'host', name: 'cpu_percent', title: 'Host CPU', unit: '%' },
  { kind: 'host', name: 'memory_percent', title: 'Host memory', unit: '%' },
  { kind: 'container', name: 'cpu_cores', title: 'Container CPU', unit: 'cores' },
  { kind: 'container', name: 'memory_bytes', title: 'Container memory', unit: 'MiB', scale: 1 / 2 ** 20 },
  { kind: 'requests', name: 'requests_per_second', title: 'Request rate', unit: 'requests/s' },
  { kind: 'requests', name: 'p50_ms', title: 'p50 latency', unit: 'ms' },
  { kind: 'requests', name: 'p95_ms', title: 'p95 latency', unit: 'ms' },
  { kind: 'requests', name: 'p99_ms', title: 'p99 latency', unit: 'ms' },
  { kind: 'requests', name: 'errors', title: 'Errors', unit: 'requests' },
  { kind: 'requests', name: 'inflight', title: 'In flight', unit: 'requests' }
];

const GROUPS: [MetricKind, string, string][] = [
  ['host', 'Host', `No host samples yet: they are taken every ${SAMPLE_SECONDS} s.`],
  ['container', 'Inference container (per replica)', `No samples yet: replicas report every ${SAMPLE_SECONDS} s.`],
  ['requests', 'Requests (per replica)', `No request samples yet: they appear within ${SAMPLE_SECONDS} s of a query.`]
];

/** The series of one metric: one per node id (`*` is every replica together). */
export function metricSeries(samples: MetricSample[], spec: MetricSpec): Series[] {
  const byNode = new Map<string, [number, number][]>();
  for (const s of samples) {
    if (s.kind === spec.kind && s.name === spec.name) {
      const label = s.nodeId === '*' ? 'all replicas' : s.nodeId;
      const points = byNode.get(label) ?? [];
      points.push([new Date(s.time).getTime() / 1000, s.value * (spec.scale ?? 1)]);
      byNode.set(label, points);
    }
  }
  return [...byNode].map(([label, points]) => ({ label, points }));
}

/** The time range shared by logs and charts: a window back from now, or from..to. */
class RangePicker {
  readonly node = el('div', 'jp-LiveML-range');
  readonly since = attrs(select([['15m', 'last 15 min'], ['1h', 'last hour'], ['24h', 'last 24 h'], ['7d', 'last 7 days']], '1h'), {
    'aria-label': 'Time range'
  });
  readonly start = attrs(input('datetime-local'), { 'aria-label': 'From' });
  readonly end = attrs(input('datetime-local'), { 'aria-label': 'To' });

  constructor(changed: () => void) {
    for (const field of [this.since, this.start, this.end]) {
      field.addEventListener('change', changed);
    }
    this.node.append(
      el('label', 'jp-LiveML-label', 'Time range'),
      this.since,
      el('label', 'jp-LiveML-label', 'or from'),
      this.start,
      el('label', 'jp-LiveML-label', 'to'),
      this.end
    );
  }

  /** From..to when "from" is set (to: now when empty), else the window. */
  range(): TimeRange {
    if (this.start.value) {
      const iso = (value: string) => (value ? new Date(value).toISOString() : undefined);
      return { start: iso(this.start.value), end: iso(this.end.value) };
    }
    return { since: this.since.value };
  }
}

/** The log search: query, columns, pages (newest first), download. */
class LogsView {
  readonly node = el('section', 'jp-LiveML-logs');
  private readonly form = new Form();
  private readonly search: HTMLInputElement;
  private readonly chooser = el('details', 'jp-LiveML-columns');
  private readonly notice = new Notice();
  private readonly results = el('div', 'jp-LiveML-logTable');
  private readonly pageLabel = el('span', 'jp-LiveML-hint');
  private readonly pageSize = attrs(select([['5', '5'], ['20', '20'], ['50', '50'], ['200', '200']], '50'), {
    'aria-label': 'Records per page'
  });
  private readonly older: HTMLButtonElement;
  private readonly newer: HTMLButtonElement;
  private readonly first: HTMLButtonElement;
  private columns = [...DEFAULT_COLUMNS];
  private known = [...LOG_COLUMNS];
  /** The page tokens of the pages shown so far (the first page has none). */
  private tokens: (string | undefined)[] = [undefined];
  private next: string | null = null;
  searched = false;

  constructor(
    private readonly model: DeploymentModel,
    private readonly range: RangePicker
  ) {
    this.search = this.form.add(
      'query',
      'Search',
      attrs(input('search', '', 'e.g. level:ERROR AND tags.node_id:replica-1, or "Replica ready"'), {
        'aria-label': 'Log search'
      }),
      'field:value (level, logger, message, node_id, release, tags.<key>, fields.<name>), "quoted words", AND, OR, NOT, parentheses'
    );
    this.form.node.addEventListener('submit', () => void this.run());
    this.first = button('First page', () => this.run(), '', 'The newest records');
    this.newer = button('Newer', () => this.page(-1), '', 'The page before this one');
    this.older = button('Older', () => this.page(1), '', 'The next, older records');
    const bar = el(
      'div',
      'jp-LiveML-actions',
      button('Search', () => this.run(), 'accept'),
      button('Download', () => this.download(), '', 'Every matching record as a text file'),
      this.chooser
    );
    this.pageSize.addEventListener('change', () => void this.run());
    const size = el('label', 'jp-LiveML-label', 'per page');
    const pager = el('div', 'jp-LiveML-actions jp-LiveML-pager', this.first, this.newer, this.older, this.pageSize, size, this.pageLabel);
    this.node.append(el('h3', 'jp-LiveML-sectionTitle', 'Logs'), this.form.node, bar, this.notice.node, this.results, pager);
    this.renderChooser();
    this.updatePager();
  }

  private params(): LogSearch {
    return { ...this.range.range(), query: this.search.value.trim() || undefined, columns: this.columns };
  }

  private renderChooser(): void {
    const boxes = this.known.map(name => {
      const box = attrs(el('input'), { type: 'checkbox', 'aria-label': name });
      box.checked = this.columns.includes(name);
      box.addEventListener('change', () => {
        const chosen = new Set(this.columns);
        if (box.checked) {
          chosen.add(name);
        } else {
          chosen.delete(name);
        }
        this.columns = this.known.filter(c => chosen.has(c));
        this.chooser.querySelector('summary')!.textContent = `Columns (${this.columns.length})`;
        void this.run();
      });
      return el('label', 'jp-LiveML-toggle', box, ` ${name}`);
    });
    const open = this.chooser.open;
    this.chooser.replaceChildren(el('summary', '', `Columns (${this.columns.length})`), el('div', 'jp-LiveML-columnList', ...boxes));
    this.chooser.open = open;
  }

  /** The first page (newest records) of the current search. */
  async run(): Promise<void> {
    this.tokens = [undefined];
    await this.load();
  }

  private async page(step: number): Promise<void> {
    if (step > 0 && this.next) {
      this.tokens.push(this.next);
    } else if (step < 0 && this.tokens.length > 1) {
      this.tokens.pop();
    }
    await this.load();
  }

  private async load(): Promise<void> {
    this.searched = true;
    this.form.clearErrors();
    const search = { ...this.params(), limit: Number(this.pageSize.value), pageToken: this.tokens[this.tokens.length - 1] };
    this.notice.show('busy', 'Searching the logs…');
    let page: LogPage;
    try {
      page = await this.model.services.logs.search(this.model.rid, search);
    } catch (error) {
      this.notice.clear();
      this.form.showError(error);
      return;
    }
    this.notice.clear();
    this.next = page.nextPageToken ?? null;
    const keys = page.data.flatMap(row => Object.keys(row)).filter(k => !this.known.includes(k));
    if (keys.length) {
      this.known = [...this.known, ...new Set(keys)];
      this.renderChooser();
    }
    this.results.replaceChildren(
      page.data.length
        ? table(page.data, this.columns, 'Log records', (column, value) =>
            column === 'time' && typeof value === 'string' ? formatTime(value) : cellText(value)
          )
        : el('div', 'jp-LiveML-empty', 'No log records match in this time range.')
    );
    this.updatePager(page.data.length);
  }

  private updatePager(count = 0): void {
    const index = this.tokens.length;
    this.older.disabled = !this.next;
    this.newer.disabled = index <= 1;
    this.first.disabled = index <= 1;
    this.pageLabel.textContent = this.searched
      ? `page ${index}: ${count} record(s), newest first${this.next ? '; older ones on the next page' : ''}`
      : '';
  }

  /** Every matching record (all pages) as a text file. */
  private async download(): Promise<void> {
    this.form.clearErrors();
    const name = `${this.model.doc?.apiName ?? this.model.rid}-logs.txt`;
    this.notice.show('busy', 'Preparing the download…');
    try {
      const text = await this.model.services.logs.download(this.model.rid, this.params());
      const url = URL.createObjectURL(new Blob([text], { type: 'text/plain' }));
      const link = attrs(el('a'), { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
      const lines = Math.max(0, text.split('\n').filter(Boolean).length - 1);
      this.notice.show('ok', `Downloaded ${lines} record(s) as ${name}.`);
    } catch (error) {
      this.notice.clear();
      this.form.showError(error);
    }
  }
}

/** The charts, one per metric, grouped by kind, each with a legend of node ids. */
class MetricsView {
  readonly node = el('section', 'jp-LiveML-metrics');
  readonly notice = new Notice();
  private readonly charts = new Map<string, Chart>();
  private readonly groups = new Map<MetricKind, { grid: HTMLElement; empty: HTMLElement }>();
  private loaded = false;

  constructor(
    private readonly model: DeploymentModel,
    private readonly range: RangePicker
  ) {
    this.node.append(el('h3', 'jp-LiveML-sectionTitle', 'Metrics'), this.notice.node);
    for (const [kind, title, empty] of GROUPS) {
      const grid = el('div', 'jp-LiveML-chartGrid');
      const note = el('div', 'jp-LiveML-empty', empty);
      this.groups.set(kind, { grid, empty: note });
      this.node.append(attrs(el('div', 'jp-LiveML-chartGroup', el('h4', '', title), note, grid), { 'aria-label': title }));
    }
  }

  private width(): number {
    const grid = this.node.querySelector('.jp-LiveML-chartGrid') as HTMLElement | null;
    const total = grid?.clientWidth || this.node.clientWidth || 800;
    return Math.max(280, Math.floor(total >= 760 ? (total - 16) / 2 : total));
  }

  /** Read the samples of the time range and redraw. */
  async refresh(): Promise<void> {
    if (!this.loaded) {
      this.notice.show('busy', 'Reading the metrics…');
    }
    let samples: MetricSample[];
    try {
      samples = await this.model.services.metrics.get(this.model.rid, this.range.range());
    } catch (error) {
      this.notice.error(error);
      throw error;
    }
    this.loaded = true;
    this.notice.clear();
    const width = this.width();
    for (const spec of METRICS) {
      const series = metricSeries(samples, spec);
      let chart = this.charts.get(spec.name);
      if (!series.length) {
        chart?.dispose();
        chart?.node.remove();
        this.charts.delete(spec.name);
        continue;
      }
      if (!chart) {
        chart = new Chart(spec.title, spec.unit);
        this.charts.set(spec.name, chart);
        const grid = this.groups.get(spec.kind)!.grid;
        const after = METRICS.slice(METRICS.indexOf(spec) + 1).map(s => this.charts.get(s.name)?.node).find(n => n?.parentNode === grid);
        grid.insertBefore(chart.node, after ?? null);
      }
      chart.set(series, width);
    }
    for (const [kind, { grid, empty }] of this.groups) {
      empty.hidden = grid.childElementCount > 0 || METRICS.every(s => s.kind !== kind);
    }
  }

  resize(): void {
    const width = this.width();
    this.charts.forEach(chart => chart.resize(width));
  }

  dispose(): void {
    this.charts.forEach(chart => chart.dispose());
    this.charts.clear();
  }
}

export class ObserveTab extends Widget {
  private readonly range: RangePicker;
  private readonly logs: LogsView;
  private readonly metrics: MetricsView;
  private readonly state = el('div', 'jp-LiveML-notice jp-LiveML-notice-warn');
  private readonly poll: Poll;
  private readonly resizer = new ResizeObserver(() => this.metrics.resize());

  constructor(readonly model: DeploymentModel) {
    super();
    this.addClass('jp-LiveML-observeTab');
    this.range = new RangePicker(() => {
      void this.logs.run();
      void this.poll.refresh();
    });
    this.logs = new LogsView(model, this.range);
    this.metrics = new MetricsView(model, this.range);
    this.state.hidden = true;
    this.node.append(this.state, this.range.node, this.logs.node, this.metrics.node);
    this.poll = new Poll({
      auto: false,
      factory: () => this.metrics.refresh(),
      frequency: { interval: SAMPLE_SECONDS * 1000, backoff: true, max: 60000 },
      standby: () => model.gone || !this.isVisible || document.visibilityState === 'hidden',
      name: `liveml:metrics:${model.rid}`
    });
    model.deleted.connect(() => {
      this.state.textContent = 'This deployment was deleted: its logs and metrics are no longer kept.';
      this.state.hidden = false;
    }, this);
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.resizer.observe(this.node);
    if (!this.logs.searched) {
      void this.logs.run();
    }
    void this.poll.start().then(() => this.poll.refresh());
  }

  protected onBeforeHide(msg: Message): void {
    super.onBeforeHide(msg);
    this.resizer.disconnect();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.poll.dispose();
    this.resizer.disconnect();
    this.metrics.dispose();
    super.dispose();
  }
}
