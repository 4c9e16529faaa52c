/**
 * The "Query" tab of a deployment's page: an editor built from the model's declared API (rows
 * for one tabular input, one JSON editor per named input otherwise), the answer as tables, and
 * the same query as a curl command or Python to copy.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import type { LiveDeployment, ModelApi, ModelPort } from './api';
import type { DeploymentModel } from './deployment';
import { attrs, button, el, Form, input, Notice, table } from './dom';

type Json = unknown;
type Rows = Record<string, unknown>[];

/** What an editor sends: a v1 body (rows and parameters) or a v2 body (one key per input). */
export type QueryBody =
  | { v2: false; rows: Rows; params: Record<string, unknown> }
  | { v2: true; body: Record<string, unknown> };

/** Placeholders that say what a value of a declared type looks like. */
const PLACEHOLDER: Record<string, string> = {
  string: 'text',
  integer: 'integer, e.g. 3',
  double: 'number, e.g. 1.5',
  boolean: 'true or false',
  datetime: '2026-01-31T12:00:00Z',
  any: 'any value'
};

/** A starting value of a declared type (for a row template). */
function example(type: string): Json {
  return { string: '', integer: 0, double: 0, boolean: false, datetime: new Date().toISOString() }[
    type
  ] ?? null;
}

/** A typed value from what was typed; throws with a clear message when it does not fit. */
export function typed(type: string, text: string, what: string): Json {
  const value = text.trim();
  if (type === 'integer' || type === 'double') {
    const number = Number(value);
    if (value === '' || !Number.isFinite(number) || (type === 'integer' && !Number.isInteger(number))) {
      throw new Error(`${what}: "${text}" is not ${type === 'integer' ? 'an integer' : 'a number'}`);
    }
    return number;
  }
  if (type === 'boolean') {
    if (!/^(true|false)$/i.test(value)) {
      throw new Error(`${what}: "${text}" is not true or false`);
    }
    return value.toLowerCase() === 'true';
  }
  if (type === 'any' && value !== '' && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return text;
}

/** JSON from an editor, or an error that says where the text is wrong. */
function parseJson(text: string, what: string): Json {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new Error(`${what} is not valid JSON: ${(error as Error).message}`);
  }
}

function isRows(value: Json): value is Rows {
  return Array.isArray(value) && value.every(v => v !== null && typeof v === 'object' && !Array.isArray(v));
}

/** A parameter's value from its field: JSON for non-strings, nothing (its default) when empty. */
function paramValue(port: ModelPort, text: string): Json {
  if (text.trim() === '') {
    return undefined;
  }
  if (port.type === 'string' || port.type === 'datetime') {
    return text;
  }
  return port.type === 'any' ? (safeJson(text) ?? text) : typed(port.type ?? 'any', text, port.name);
}

function safeJson(text: string): Json {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Parameter fields in a form; answers a reader of their values (errors go on the field). */
function paramFields(form: Form, params: ModelPort[]): () => Record<string, unknown> {
  for (const port of params) {
    const initial = port.default === undefined || port.default === null ? '' : String(port.default);
    const hint = `${port.type ?? 'any'} parameter${port.required ? ', required' : ', empty: its default'}`;
    form.add(port.name, port.name, input('text', initial, PLACEHOLDER[port.type ?? 'any'] ?? ''), hint);
  }
  return () => {
    const values: Record<string, unknown> = {};
    for (const port of params) {
      try {
        const value = paramValue(port, form.input(port.name).value);
        if (value !== undefined) {
          values[port.name] = value;
        }
      } catch (error) {
        form.fieldError(port.name, (error as Error).message);
        throw error;
      }
    }
    return values;
  };
}

/** Interface of the two editors. */
interface Editor {
  readonly node: HTMLElement;
  /** The body to send, or null after showing what is wrong at the editor concerned. */
  body(): QueryBody | null;
}

/** One tabular input: a row editor (one input per column), or its rows as JSON; parameters. */
class RowsEditor implements Editor {
  readonly node = el('div', 'jp-LiveML-rowsEditor');
  private readonly form = new Form();
  private readonly grid = el('table', 'jp-LiveML-table jp-LiveML-rowGrid');
  private readonly json = el('textarea', 'jp-mod-styled jp-LiveML-input jp-LiveML-json');
  private readonly asJson = el('input');
  private readonly rowsBox = el('div', 'jp-LiveML-rowsBox');
  private readonly params: () => Record<string, unknown>;
  private rows: HTMLInputElement[][] = [];

  constructor(
    private readonly port: ModelPort,
    params: ModelPort[]
  ) {
    attrs(this.grid, { 'aria-label': `Rows of ${port.name}` });
    this.asJson.type = 'checkbox';
    this.asJson.addEventListener('change', () => this.toggle());
    const toggle = el('label', 'jp-LiveML-toggle', this.asJson, ' Edit as JSON');
    this.json.rows = 8;
    this.json.hidden = true;
    this.json.spellcheck = false;
    const head = el('tr', '', ...this.columns().map(c => el('th', '', c.name, el('span', 'jp-LiveML-type', ` ${c.type}`))), el('th'));
    this.grid.append(el('thead', '', head), el('tbody'));
    this.rowsBox.append(this.grid, button('Add row', () => this.addRow()));
    this.form.add(port.name, `${port.name} (rows)`, this.json);
    const row = this.form.node.lastElementChild as HTMLElement;
    row.insertBefore(this.rowsBox, this.json);
    this.params = paramFields(this.form, params);
    this.node.append(toggle, this.form.node);
    this.addRow();
  }

  private columns(): { name: string; type: string }[] {
    return this.port.columns?.length ? this.port.columns : [{ name: 'value', type: 'any' }];
  }

  /** Add a row (with these values as text). */
  addRow(values: Record<string, unknown> = {}): void {
    const index = this.rows.length + 1;
    const inputs = this.columns().map(c => {
      const value = values[c.name];
      const text = value === undefined || value === null ? '' : typeof value === 'object' ? JSON.stringify(value) : String(value);
      return attrs(input('text', text, PLACEHOLDER[c.type] ?? c.type), {
        'aria-label': `${c.name} (row ${index})`
      });
    });
    const cells = inputs.map(i => el('td', '', i));
    const tr = el('tr', '', ...cells);
    tr.append(el('td', '', attrs(button('×', () => this.removeRow(tr, inputs), '', 'Remove this row'), { 'aria-label': `Remove row ${index}` })));
    this.grid.tBodies[0].append(tr);
    this.rows.push(inputs);
  }

  private removeRow(tr: HTMLElement, inputs: HTMLInputElement[]): void {
    tr.remove();
    this.rows = this.rows.filter(r => r !== inputs);
  }

  /** The rows the row editor holds (typed); throws on a value that does not fit its column. */
  private gridRows(): Rows {
    const columns = this.columns();
    return this.rows.map((inputs, r) => {
      const row: Record<string, unknown> = {};
      inputs.forEach((field, i) => {
        if (field.value.trim() !== '') {
          row[columns[i].name] = typed(columns[i].type, field.value, `row ${r + 1}, ${columns[i].name}`);
        }
      });
      return row;
    });
  }

  private jsonRows(): Rows {
    const value = parseJson(this.json.value, this.port.name);
    const rows = isRows(value) ? value : (value as { requestData?: Json })?.requestData;
    if (!isRows(rows)) {
      throw new Error('The rows must be a JSON list of objects, e.g. [{"column": 1}]');
    }
    return rows;
  }

  /** Switch between the row editor and JSON, carrying the rows over (or staying, on an error). */
  private toggle(): void {
    this.form.clearErrors();
    try {
      if (this.asJson.checked) {
        this.json.value = JSON.stringify(this.gridRows(), null, 2);
      } else {
        const rows = this.jsonRows();
        this.grid.tBodies[0].replaceChildren();
        this.rows = [];
        rows.forEach(row => this.addRow(row));
      }
    } catch (error) {
      this.asJson.checked = !this.asJson.checked;
      this.form.fieldError(this.port.name, (error as Error).message);
    }
    this.json.hidden = !this.asJson.checked;
    this.rowsBox.hidden = this.asJson.checked;
  }

  body(): QueryBody | null {
    this.form.clearErrors();
    let rows: Rows;
    try {
      rows = this.asJson.checked ? this.jsonRows() : this.gridRows();
    } catch (error) {
      this.form.fieldError(this.port.name, (error as Error).message);
      return null;
    }
    try {
      return { v2: false, rows, params: this.params() };
    } catch {
      return null;
    }
  }
}

/** Several named inputs (or none declared): one JSON editor per table, one field per parameter. */
class InputsEditor implements Editor {
  readonly node = el('div', 'jp-LiveML-inputsEditor');
  private readonly form = new Form();
  private readonly tables: ModelPort[];
  private readonly params: () => Record<string, unknown>;
  /** No input declared: one editor for the whole body. */
  private readonly whole: boolean;

  constructor(inputs: ModelPort[]) {
    this.whole = !inputs.length;
    this.tables = this.whole ? [{ name: 'body', kind: 'tabular' }] : inputs.filter(p => p.kind !== 'parameter');
    for (const port of this.tables) {
      const editor = el('textarea', 'jp-mod-styled jp-LiveML-input jp-LiveML-json');
      editor.rows = 6;
      editor.spellcheck = false;
      editor.value = this.whole ? '{}' : JSON.stringify(template(port), null, 2);
      const columns = port.columns?.map(c => `${c.name} (${c.type})`).join(', ');
      const hint = this.whole
        ? 'the whole v2 body: one key per input of the model'
        : `a list of rows${columns ? ` with ${columns}` : ''}`;
      this.form.add(port.name, this.whole ? 'Body' : port.name, editor, hint);
    }
    this.params = paramFields(this.form, inputs.filter(p => p.kind === 'parameter'));
    this.node.append(this.form.node);
  }

  body(): QueryBody | null {
    this.form.clearErrors();
    const body: Record<string, unknown> = {};
    let ok = true;
    for (const port of this.tables) {
      try {
        const value = parseJson(this.form.input(port.name).value, port.name);
        if (this.whole) {
          if (value === null || typeof value !== 'object' || Array.isArray(value)) {
            throw new Error('The body must be a JSON object: one key per input');
          }
          Object.assign(body, value);
        } else {
          body[port.name] = value;
        }
      } catch (error) {
        this.form.fieldError(port.name, (error as Error).message);
        ok = false;
      }
    }
    try {
      Object.assign(body, this.params());
    } catch {
      ok = false;
    }
    return ok ? { v2: true, body } : null;
  }
}

/** `[]`, or one row with a value of each declared column's type. */
function template(port: ModelPort): Json {
  if (!port.columns?.length) {
    return [];
  }
  return [Object.fromEntries(port.columns.map(c => [c.name, example(c.type)]))];
}

/** True when the model fits v1: one tabular input (parameters aside) and at most one output. */
export function isSingle(api: ModelApi | null): boolean {
  const tables = api?.inputs.filter(p => p.kind !== 'parameter') ?? [];
  return tables.length === 1 && (api?.outputs.length ?? 0) <= 1 && api?.outputs[0]?.kind !== 'parameter';
}

/** `value` quoted for a POSIX shell (as Python's shlex.quote). */
export function shellQuote(value: string): string {
  return /^[\w@%+=:,./-]+$/.test(value) ? value : `'${value.replace(/'/g, `'"'"'`)}'`;
}

/** A Python literal of a JSON value. */
export function pyLiteral(value: Json): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'number' || typeof value === 'string') {
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) {
    return `[${value.map(pyLiteral).join(', ')}]`;
  }
  const items = Object.entries(value as Record<string, unknown>).map(([k, v]) => `${JSON.stringify(k)}: ${pyLiteral(v)}`);
  return `{${items.join(', ')}}`;
}

/** The absolute URL of a deployment's inference endpoint, as a terminal would call it. */
export function inferenceUrl(rid: string, v2: boolean): string {
  const base = ServerConnection.makeSettings().baseUrl;
  const path = URLExt.join(base, 'foundry-ml-live', 'api', 'inference', 'transform', rid, v2 ? 'v2' : '');
  return new URL(path.replace(/\/$/, ''), location.href).href;
}

/** The JSON a query sends. */
function wireBody(query: QueryBody): Record<string, unknown> {
  return query.v2 ? query.body : { requestData: query.rows, requestParams: query.params };
}

/** curl that works in a terminal on this machine (the token through the CLI), as `show_curl`. */
export function curlSnippet(rid: string, query: QueryBody): string {
  return (
    `curl -s -X POST ${shellQuote(inferenceUrl(rid, query.v2))} \\\n` +
    '  -H "Authorization: Bearer $(liveml token show)" -H \'Content-Type: application/json\' \\\n' +
    `  -d ${shellQuote(JSON.stringify(wireBody(query)))}`
  );
}

/** Python that works in a kernel of this Jupyter (the client finds its control plane). */
export function pythonSnippet(apiName: string, query: QueryBody): string {
  const body = query.v2 || Object.keys(query.params).length ? wireBody(query) : query.rows;
  return (
    'from liveml_ext.client import Client\n\n' +
    'client = Client()  # this Jupyter\'s control plane (or LIVEML_URL and LIVEML_TOKEN)\n' +
    `answer = client.query(${JSON.stringify(apiName)}, ${pyLiteral(body)}${query.v2 ? ', v2=True' : ''})\n` +
    'print(answer)'
  );
}

/** An answer's value: a table for rows, its text otherwise. */
function valueNode(value: Json, label: string): Node {
  if (isRows(value) && value.length) {
    return table(value, [], label);
  }
  if (isRows(value)) {
    return el('div', 'jp-LiveML-empty', 'no rows');
  }
  return attrs(el('pre', 'jp-LiveML-value', typeof value === 'string' ? value : JSON.stringify(value, null, 2)), {
    'aria-label': label
  });
}

export class QueryTab extends Widget {
  private readonly state = el('div', 'jp-LiveML-queryState');
  private readonly editorBox = el('div', 'jp-LiveML-queryEditor');
  private readonly notice = new Notice();
  private readonly result = attrs(el('div', 'jp-LiveML-queryResult'), { 'aria-label': 'Answer' });
  private readonly snippetNotice = new Notice();
  private readonly snippet = attrs(el('textarea', 'jp-mod-styled jp-LiveML-input jp-LiveML-snippet'), {
    'aria-label': 'Snippet',
    readonly: ''
  });
  private readonly send: HTMLButtonElement;
  private editor: Editor | null = null;
  private editorFor = '';

  constructor(readonly model: DeploymentModel) {
    super();
    this.addClass('jp-LiveML-queryTab');
    this.snippet.hidden = true;
    this.snippet.rows = 7;
    this.snippet.spellcheck = false;
    this.send = button('Send', () => this.query(), 'accept', 'Send this query to the deployment');
    const actions = el(
      'div',
      'jp-LiveML-actions',
      this.send,
      button('Copy as curl', () => this.copy('curl'), '', 'A curl command for a terminal on this machine'),
      button('Copy as Python', () => this.copy('python'), '', 'Python for a notebook of this Jupyter')
    );
    this.node.append(this.state, this.editorBox, actions, this.notice.node, this.result, this.snippetNotice.node, this.snippet);
    this.editorBox.append(el('div', 'jp-LiveML-empty', 'Reading the model\'s inputs…'));
    model.changed.connect((_, doc) => void this.readApi(doc), this);
    model.deleted.connect(() => this.showState(), this);
    if (model.doc) {
      void this.readApi(model.doc);
    }
  }

  /** Say when nothing can answer (disabled, deleted, no release yet). */
  private showState(): void {
    const doc = this.model.doc;
    let text = '';
    if (this.model.gone) {
      text = 'This deployment was deleted: there is nothing to query.';
    } else if (doc && !doc.enabled) {
      text = `This deployment is disabled: no replica answers queries. Enable it on the Overview tab (or \`liveml enable ${doc.apiName}\`).`;
    } else if (doc && !doc.release && !doc.targetRelease) {
      text = 'No release to serve yet: tag a release of its objective first.';
    }
    this.state.className = `jp-LiveML-queryState${text ? ' jp-LiveML-notice jp-LiveML-notice-warn' : ''}`;
    this.state.textContent = text;
    this.state.hidden = !text;
    this.send.disabled = !!text;
  }

  /** Rebuild the editor when the served release (its model API) changed. */
  private async readApi(doc: LiveDeployment): Promise<void> {
    this.showState();
    const release = doc.release ?? doc.targetRelease;
    if (!release || release.submissionRid === this.editorFor) {
      return;
    }
    this.editorFor = release.submissionRid;
    let api: ModelApi | null;
    try {
      api = await this.model.modelApi();
    } catch (error) {
      this.editorFor = '';
      this.notice.error(error);
      return;
    }
    const tables = api?.inputs.filter(p => p.kind !== 'parameter') ?? [];
    const params = api?.inputs.filter(p => p.kind === 'parameter') ?? [];
    this.editor = isSingle(api) ? new RowsEditor(tables[0], params) : new InputsEditor(api?.inputs ?? []);
    const kind = isSingle(api) ? 'v1: rows in, rows out' : 'v2: one key per named input';
    this.editorBox.replaceChildren(el('div', 'jp-LiveML-hint', `Query (${kind})`), this.editor.node);
  }

  private async query(): Promise<void> {
    const query = this.editor?.body();
    if (!query) {
      this.result.replaceChildren();
      this.notice.show('error', 'Nothing was sent: correct the marked input first.');
      return;
    }
    const inference = this.model.services.inference;
    const started = performance.now();
    const answer = await this.notice.run('Sending the query…', (): Promise<unknown> =>
      query.v2 ? inference.transformV2(this.model.rid, query.body) : inference.transform(this.model.rid, query.rows, query.params)
    );
    if (answer === undefined) {
      this.result.replaceChildren();
      return;
    }
    const ms = Math.round(performance.now() - started);
    const v1 = answer as { modelUuid?: string; responseData?: Rows };
    const uuid = !query.v2 && v1.modelUuid ? v1.modelUuid : this.model.doc?.release?.modelUuid ?? 'unknown';
    const outputs = query.v2 ? (answer as Record<string, unknown>) : { prediction: v1.responseData ?? [] };
    const blocks = Object.entries(outputs).map(([name, value]) =>
      el('div', 'jp-LiveML-output', query.v2 ? el('h4', '', name) : null, valueNode(value, query.v2 ? name : 'Prediction'))
    );
    const meta = el('div', 'jp-LiveML-answerMeta', `Answered by model ${uuid} in ${ms} ms (measured in the browser)`);
    this.result.replaceChildren(meta, ...blocks);
  }

  /** Show the query as a snippet and put it on the clipboard (or say to copy it from the box). */
  private async copy(kind: 'curl' | 'python'): Promise<void> {
    const query = this.editor?.body();
    if (!query) {
      this.snippetNotice.show('error', 'No snippet: correct the marked input first.');
      return;
    }
    const doc = this.model.doc;
    const text = kind === 'curl' ? curlSnippet(this.model.rid, query) : pythonSnippet(doc?.apiName ?? this.model.rid, query);
    this.snippet.value = text;
    this.snippet.hidden = false;
    this.snippet.dataset.kind = kind;
    const what = kind === 'curl' ? 'curl command' : 'Python';
    try {
      await navigator.clipboard.writeText(text);
      this.snippetNotice.show('ok', `Copied the ${what} to the clipboard (also shown below).`);
    } catch {
      this.snippet.focus();
      this.snippet.select();
      this.snippetNotice.show('info', `The browser refused the clipboard: the ${what} is selected below, copy it with Ctrl+C.`);
    }
  }
}
