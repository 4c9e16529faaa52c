/**
 * The small DOM pieces every view shares: elements, badges, buttons, tables, messages, forms
 * whose fields show the server's validation errors, and a modal dialog that stays open on error.
 */
import { ServerConnection } from '@jupyterlab/services';

import { LiveMLError } from './handler';

type Child = Node | string | null | undefined | false;

/** `document.createElement(tag)` with a class, text or children, and attributes. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      node.append(child);
    }
  }
  return node;
}

/** Set attributes (aria-label, title, data-*) and answer the node. */
export function attrs<T extends HTMLElement>(node: T, values: Record<string, string>): T {
  for (const [key, value] of Object.entries(values)) {
    node.setAttribute(key, value);
  }
  return node;
}

const TAGS: Record<string, string> = { STAGING: 'Staging', PRODUCTION: 'Production' };

/** Staging or Production as people write it. */
export function tagLabel(tag: string | null | undefined): string {
  return tag ? (TAGS[tag] ?? tag) : '';
}

/** A state badge (ACTIVE, STARTING, DEGRADED, FAILED, DISABLED, READY, a tag...). */
export function badge(state: string, text = state): HTMLSpanElement {
  const node = el('span', `jp-LiveML-badge jp-LiveML-badge-${state.toLowerCase()}`, text);
  node.dataset.state = state;
  return node;
}

export type ButtonKind = 'accept' | 'warn' | 'reject' | '';

/** A JupyterLab-styled button; `onClick` may be async (the button is disabled meanwhile). */
export function button(
  label: string,
  onClick: () => unknown,
  kind: ButtonKind = '',
  title = ''
): HTMLButtonElement {
  const node = el('button', `jp-Button jp-mod-styled jp-LiveML-button${kind ? ` jp-mod-${kind}` : ''}`, label);
  node.type = 'button';
  if (title) {
    node.title = title;
  }
  node.addEventListener('click', async () => {
    node.disabled = true;
    try {
      await onClick();
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

/** One line for a failure: the envelope's `errorName: message`, or what went wrong and what to do. */
export function errorMessage(error: unknown): string {
  if (error instanceof LiveMLError) {
    return `${error.errorName}: ${error.message}`;
  }
  if (error instanceof ServerConnection.NetworkError) {
    return 'The Jupyter server cannot be reached: check that jupyter lab is still running, then try again.';
  }
  return error instanceof Error ? error.message : String(error);
}

export type NoticeKind = 'ok' | 'info' | 'warn' | 'error' | 'busy';

/** A message area: what an action did, is doing (with a spinner) or why it failed. */
export class Notice {
  readonly node = el('div', 'jp-LiveML-notice');

  constructor() {
    this.node.hidden = true;
  }

  show(kind: NoticeKind, text: string): void {
    this.node.className = `jp-LiveML-notice jp-LiveML-notice-${kind}`;
    this.node.setAttribute('role', kind === 'error' ? 'alert' : 'status');
    this.node.replaceChildren(
      ...(kind === 'busy' ? [el('span', 'jp-LiveML-spinner')] : []),
      el('span', 'jp-LiveML-noticeText', text)
    );
    this.node.hidden = false;
  }

  error(error: unknown): void {
    this.show('error', errorMessage(error));
  }

  clear(): void {
    this.node.hidden = true;
    this.node.replaceChildren();
  }

  /** Run `action` showing `busy` meanwhile, then `done` (or the error); answers its result. */
  async run<T>(busy: string, action: () => Promise<T>, done = ''): Promise<T | undefined> {
    this.show('busy', busy);
    try {
      const result = await action();
      if (done) {
        this.show('ok', done);
      } else {
        this.clear();
      }
      return result;
    } catch (error) {
      this.error(error);
      return undefined;
    }
  }
}

/** A plain value as table text: numbers rounded, objects as JSON, nothing as empty. */
export function cellText(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  if (typeof value === 'number') {
    return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(8)));
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** A table of rows; `columns` defaults to every key of the rows in order of appearance. */
export function table(
  rows: Record<string, unknown>[],
  columns: string[] = [],
  label = '',
  render: (column: string, value: unknown) => Node | string = (_, value) => cellText(value)
): HTMLTableElement {
  const names = columns.length ? columns : [...new Set(rows.flatMap(row => Object.keys(row)))];
  const node = el('table', 'jp-LiveML-table');
  if (label) {
    node.setAttribute('aria-label', label);
  }
  const head = el('tr', '', ...names.map(name => el('th', '', name)));
  const body = rows.map(row =>
    el(
      'tr',
      '',
      ...names.map(name => {
        const value = row[name];
        const cell = el('td', typeof value === 'number' ? 'jp-LiveML-number' : '', render(name, value));
        return cell;
      })
    )
  );
  node.append(el('thead', '', head), el('tbody', '', ...body));
  return node;
}

/** A local date and time, to the second. */
export function formatTime(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** "12 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function ago(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - new Date(iso).getTime()) / 1000));
  if (seconds < 60) {
    return `${seconds} s ago`;
  }
  if (seconds < 3600) {
    return `${Math.round(seconds / 60)} min ago`;
  }
  if (seconds < 86400) {
    return `${Math.round(seconds / 3600)} h ago`;
  }
  return `${Math.round(seconds / 86400)} d ago`;
}

/** The last part of a RID (its uuid's first 8 characters), for narrow columns. */
export function shortRid(rid: string): string {
  return rid.split('.').pop()?.slice(0, 8) ?? rid;
}

export type Input = HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement;

/** `<select>` with these options (value, label) and one chosen. */
export function select(options: [string, string][], value = ''): HTMLSelectElement {
  const node = el('select', 'jp-mod-styled jp-LiveML-input');
  for (const [optionValue, label] of options) {
    const option = el('option', '', label);
    option.value = optionValue;
    node.append(option);
  }
  if (value) {
    node.value = value;
  }
  return node;
}

/** `<input>` of a type, with a value and placeholder. */
export function input(type: string, value = '', placeholder = ''): HTMLInputElement {
  const node = el('input', 'jp-mod-styled jp-LiveML-input');
  node.type = type;
  node.value = value;
  node.placeholder = placeholder;
  return node;
}

/**
 * Labelled fields by name. `showError` puts a server error on the field it concerns (the
 * envelope's `field`, the `errors` of a validation failure, or a parameter named like a field);
 * what concerns no field goes to the form's notice.
 */
export class Form {
  readonly node = el('form', 'jp-LiveML-form');
  readonly notice = new Notice();
  private readonly fields = new Map<string, { input: Input; error: HTMLElement; row: HTMLElement }>();
  private readonly routes = new Map<string, string>();

  constructor() {
    this.node.addEventListener('submit', event => event.preventDefault());
  }

  /** Add a labelled field named `name` (the API's field name) and answer its input. */
  add<T extends Input>(name: string, label: string, field: T, hint = ''): T {
    const id = `jp-LiveML-field-${name}-${Math.random().toString(36).slice(2, 8)}`;
    field.id = id;
    field.name = name;
    const error = el('div', 'jp-LiveML-fieldError');
    error.hidden = true;
    const caption = el('label', 'jp-LiveML-label', label);
    caption.htmlFor = id;
    const row = el('div', 'jp-LiveML-field', caption, field, hint ? el('div', 'jp-LiveML-hint', hint) : null, error);
    row.dataset.field = name;
    this.node.append(row);
    this.fields.set(name, { input: field, error, row });
    return field;
  }

  /** Put the server's `errorName` errors on field `name` (when its parameters name no field or several). */
  route(errorName: string, name: string): this {
    this.routes.set(errorName, name);
    return this;
  }

  /** Run `action` with a spinner in the form's notice; a failure goes to its field(s). */
  async run<T>(busy: string, action: () => Promise<T>): Promise<T | undefined> {
    this.clearErrors();
    this.notice.show('busy', busy);
    try {
      const result = await action();
      this.notice.clear();
      return result;
    } catch (error) {
      this.showError(error);
      return undefined;
    }
  }

  input(name: string): Input {
    const field = this.fields.get(name);
    if (!field) {
      throw new Error(`no field ${name}`);
    }
    return field.input;
  }

  value(name: string): string {
    return this.input(name).value.trim();
  }

  clearErrors(): void {
    for (const { input: field, error, row } of this.fields.values()) {
      error.hidden = true;
      error.textContent = '';
      row.classList.remove('jp-mod-error');
      field.removeAttribute('aria-invalid');
    }
    this.notice.clear();
  }

  /** Mark one field as wrong, with the message (answers false when there is no such field). */
  fieldError(name: string, message: string): boolean {
    const key = name.split('.').pop() ?? name;
    const field = this.fields.get(name) ?? this.fields.get(key);
    if (!field) {
      return false;
    }
    field.error.textContent = message;
    field.error.hidden = false;
    field.row.classList.add('jp-mod-error');
    field.input.setAttribute('aria-invalid', 'true');
    return true;
  }

  /** Show a failure where it belongs: on its field(s), else in the form's notice. */
  showError(error: unknown): void {
    this.clearErrors();
    if (!(error instanceof LiveMLError)) {
      this.notice.error(error);
      return;
    }
    const params = error.parameters as Record<string, unknown>;
    const listed = Array.isArray(params.errors)
      ? (params.errors as { field?: string; message?: string }[])
      : [];
    const routed = this.routes.get(error.errorName);
    let placed = routed !== undefined && this.fieldError(routed, errorMessage(error));
    for (const item of placed ? [] : listed) {
      if (item.field && this.fieldError(item.field, `${error.errorName}: ${item.message ?? ''}`)) {
        placed = true;
      }
    }
    if (!placed) {
      const named =
        typeof params.field === 'string'
          ? [params.field]
          : Object.keys(params).filter(key => this.fields.has(key));
      placed = named.some(name => this.fieldError(name, errorMessage(error)));
    }
    if (!placed) {
      this.notice.error(error);
    } else {
      this.notice.show('error', 'The server refused it: see the marked field.');
    }
  }
}

export interface ModalButton {
  label: string;
  kind?: ButtonKind;
  /** Runs on click; the modal closes when it resolves to anything but `false`. */
  action?: () => Promise<unknown> | unknown;
}

/**
 * A modal dialog in JupyterLab's look that stays open while its action runs and when it fails:
 * the error shows inside it (its `notice`, or the `form`'s fields) and the user can correct it.
 */
export class Modal {
  readonly node = el('div', 'jp-Dialog jp-ThemedContainer jp-LiveML-modal');
  readonly notice: Notice;
  private readonly content = el('div', 'jp-Dialog-content');
  private closed: (value: boolean) => void = () => undefined;
  readonly done: Promise<boolean>;

  constructor(
    title: string,
    body: HTMLElement,
    buttons: ModalButton[],
    private readonly form: Form | null = null
  ) {
    this.notice = form ? form.notice : new Notice();
    this.done = new Promise(resolve => (this.closed = resolve));
    const header = el('div', 'jp-Dialog-header', el('div', 'jp-Dialog-title', title));
    const footer = el('div', 'jp-Dialog-footerButtons');
    for (const spec of buttons) {
      const node = el(
        'button',
        `jp-Dialog-button jp-mod-styled ${spec.kind ? `jp-mod-${spec.kind}` : 'jp-mod-reject'}`,
        el('div', 'jp-Dialog-buttonLabel', spec.label)
      );
      node.type = 'button';
      node.addEventListener('click', () => void this.press(spec, footer));
      footer.append(node);
    }
    const main = el('div', 'jp-Dialog-body', body, this.notice.node);
    this.content.append(header, main, el('div', 'jp-Dialog-footer', footer));
    attrs(this.content, { role: 'dialog', 'aria-modal': 'true', 'aria-label': title });
    this.node.append(this.content);
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Escape') {
        event.stopPropagation();
        this.close(false);
      }
    });
    document.body.append(this.node);
    const first = this.node.querySelector<HTMLElement>('input, select, textarea, button');
    first?.focus();
  }

  private async press(spec: ModalButton, footer: HTMLElement): Promise<void> {
    if (!spec.action) {
      this.close(false);
      return;
    }
    const buttons = [...footer.querySelectorAll('button')];
    buttons.forEach(b => (b.disabled = true));
    this.form?.clearErrors();
    this.notice.show('busy', `${spec.label}…`);
    try {
      const result = await spec.action();
      if (result !== false) {
        this.close(true);
        return;
      }
      this.notice.clear();
    } catch (error) {
      if (this.form) {
        this.form.showError(error);
      } else {
        this.notice.error(error);
      }
    } finally {
      buttons.forEach(b => (b.disabled = false));
    }
  }

  close(accepted: boolean): void {
    this.node.remove();
    this.closed(accepted);
  }
}

/** Ask before a destructive action; it runs inside the dialog, which stays open if it fails. */
export function confirm(
  title: string,
  message: Node | string,
  label: string,
  action: () => Promise<unknown>,
  kind: ButtonKind = 'warn'
): Promise<boolean> {
  const body = el('div', 'jp-LiveML-confirm', message);
  return new Modal(title, body, [{ label: 'Cancel' }, { label, kind, action }]).done;
}
