/**
 * The "Releases" page of a modeling objective: its release history with the Staging and
 * Production tags, the tag history, a form to release a submission to Staging, "Mark as
 * Production" per release, and the objective's deployments (which tag each follows, which
 * release it serves). Polled while visible, with back-off while reads fail.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import type { CommandRegistry } from '@lumino/commands';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import type { LiveDeployment, Objective, Release, Submission, TagEvent } from './api';
import { findObjective, noObjectives, objectiveOptions } from './create';
import {
  attrs,
  badge,
  button,
  cellText,
  confirm,
  el,
  errorMessage,
  Form,
  formatTime,
  input,
  Notice,
  select,
  shortRid,
  table,
  tagLabel
} from './dom';
import type { LiveML } from './service';

const INTERVAL = 5000;
const MAX_INTERVAL = 60000;
const OPEN_DEPLOYMENT = 'liveml:open-deployment';

/** A free version after the newest one: its last number raised (1.0 → 1.1), as the server suggests. */
export function nextVersion(releases: Release[]): string {
  if (releases.length === 0) {
    return '1.0';
  }
  const taken = new Set(releases.map(r => r.version));
  const latest = releases[0].version;
  const match = /^(.*?)(\d+)$/.exec(latest);
  for (let n = 1; n <= taken.size + 1; n++) {
    const candidate = match ? `${match[1]}${Number(match[2]) + n}` : `${latest}-${n + 1}`;
    if (!taken.has(candidate)) {
      return candidate;
    }
  }
  return `${latest}-new`;
}

/** Newest first, by `createdAt` (or `at`). */
function newestFirst<T extends { createdAt?: string; at?: string }>(items: T[]): T[] {
  const time = (item: T) => new Date(item.createdAt ?? item.at ?? 0).getTime();
  return [...items].sort((a, b) => time(b) - time(a));
}

/** "a (api-a), b (api-b)" or a plain "no deployment". */
function deploymentNames(deployments: LiveDeployment[]): string {
  return deployments.map(d => `${d.name} (${d.apiName})`).join(', ');
}

/** Everything the page shows of one objective, read at once. */
interface Snapshot {
  releases: Release[];
  submissions: Submission[];
  tags: TagEvent[];
  deployments: LiveDeployment[];
}

export class ReleasesView extends Widget {
  readonly poll: Poll;
  /** What an action did. */
  readonly notice = new Notice();
  /** Why the page cannot be read (cleared by the next good read). */
  private readonly problem = new Notice();
  private readonly formBox: HTMLElement;
  private readonly chooser = select([]);
  private readonly body = el('div', 'jp-LiveML-releasesBody');
  private readonly releaseForm = new Form();
  private readonly submission: HTMLSelectElement;
  private readonly version: HTMLInputElement;
  private readonly tables = el('div', 'jp-LiveML-releasesTables');
  private objectives: Objective[] | null = null;
  private snapshot: Snapshot | null = null;
  private versionEdited = false;
  /** The objective shown changed (the page's title follows it). */
  onObjective: (objective: Objective | null) => void = () => undefined;

  constructor(
    readonly services: LiveML,
    readonly objective = '',
    private readonly commands?: CommandRegistry
  ) {
    super();
    this.addClass('jp-LiveML-releases');
    attrs(this.chooser, { 'aria-label': 'Objective' });
    this.chooser.addEventListener('change', () => {
      this.snapshot = null;
      this.versionEdited = false;
      this.releaseForm.clearErrors();
      this.onObjective(this.current);
      this.render();
      void this.poll.refresh();
    });
    const header = el(
      'div',
      'jp-LiveML-releasesHeader',
      el('h2', 'jp-LiveML-pageTitle', 'Model releases'),
      el('label', 'jp-LiveML-chooser', 'Objective', this.chooser),
      button('⟳', () => this.poll.refresh(), '', 'Refresh now')
    );

    const form = this.releaseForm;
    form.node.classList.add('jp-LiveML-releaseForm');
    form.route('ReleaseVersionAlreadyExists', 'version');
    this.submission = form.add('submission', 'Submission', select([]));
    this.version = form.add('version', 'Version', input('text', '', '1.0'));
    this.version.addEventListener('input', () => (this.versionEdited = true));
    form.add('note', 'Note', input('text', '', 'what changed (optional)'));
    form.node.append(el('div', 'jp-LiveML-formActions',
      button('Release to Staging', () => this.releaseToStaging(), 'accept',
        'Release this submission under the version and tag it Staging')), form.notice.node);
    this.formBox = section('Release to Staging', form.node);
    this.body.append(this.formBox, this.tables);
    this.node.append(header, this.problem.node, this.notice.node, this.body);
    this.poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: INTERVAL, backoff: true, max: MAX_INTERVAL },
      standby: () => !this.isVisible || document.visibilityState === 'hidden',
      name: 'liveml:releases'
    });
  }

  /** The objective chosen, once the objectives are read. */
  get current(): Objective | null {
    return this.objectives?.find(o => o.rid === this.chooser.value) ?? null;
  }

  /** Read the objectives and the chosen one's releases; a failure shows, then backs the poll off. */
  async refresh(): Promise<void> {
    try {
      const objectives = await this.services.objectives.list();
      this.setObjectives(objectives);
      const objective = this.current;
      if (objective) {
        const rid = objective.rid;
        const [releases, submissions, tags, deployments] = await Promise.all([
          this.services.objectives.releases(rid),
          this.services.objectives.submissions(rid),
          this.services.objectives.tagHistory(rid),
          this.services.deployments.list()
        ]);
        if (this.chooser.value !== rid) {
          return; // another objective was chosen meanwhile
        }
        this.snapshot = {
          releases: newestFirst(releases),
          submissions: newestFirst(submissions),
          tags: newestFirst(tags),
          deployments: deployments.filter(d => d.objectiveRid === rid)
        };
      }
      this.problem.clear();
      this.render();
    } catch (error) {
      this.problem.show('error', `${errorMessage(error)} (retrying by itself)`);
      throw error;
    }
  }

  /** Fill the chooser (keeping the choice; first the objective the page was opened for). */
  private setObjectives(objectives: Objective[]): void {
    const first = this.objectives === null;
    const before = this.chooser.value;
    this.objectives = objectives;
    const options = objectiveOptions(objectives);
    if (options.map(o => o.join('\u0000')).join('\u0001') !== this.optionsKey(this.chooser)) {
      this.chooser.replaceChildren(...options.map(([value, label]) => option(value, label)));
    }
    const wanted = first ? findObjective(objectives, this.objective)?.rid : before;
    this.chooser.value = wanted ?? objectives[0]?.rid ?? '';
    if (first || this.chooser.value !== before) {
      this.onObjective(this.current);
    }
  }

  private optionsKey(node: HTMLSelectElement): string {
    return [...node.options].map(o => `${o.value}\u0000${o.label}`).join('\u0001');
  }

  /** Show the snapshot: form options, releases, deployments, tag history. */
  private render(): void {
    if (this.objectives !== null && this.objectives.length === 0) {
      this.body.replaceChildren(noObjectives());
      return;
    }
    if (!this.body.contains(this.tables)) {
      this.body.replaceChildren(this.formBox, this.tables);
    }
    const snap = this.snapshot;
    if (!snap) {
      this.tables.replaceChildren(el('p', 'jp-LiveML-empty', 'Loading releases…'));
      return;
    }
    this.renderForm(snap);
    const names = new Map(snap.submissions.map(s => [s.rid, s.name || shortRid(s.rid)]));
    this.tables.replaceChildren(
      section('Releases', snap.releases.length
        ? this.releasesTable(snap, names)
        : el('p', 'jp-LiveML-empty', 'No release yet: release a submission to Staging above.')),
      section('Deployments', snap.deployments.length
        ? this.deploymentsTable(snap.deployments)
        : el('p', 'jp-LiveML-empty', 'No deployment of this objective yet.')),
      section('Tag history', snap.tags.length
        ? table(snap.tags.map(t => ({ When: formatTime(t.at), Tag: t.tag, Version: t.version, By: t.by })),
          [], 'Tag history', (column, value) => (column === 'Tag' ? tagBadge(String(value)) : cellText(value)))
        : el('p', 'jp-LiveML-empty', 'No tag moved yet.'))
    );
  }

  /** The submissions (newest first, with names) and the suggested version. */
  private renderForm(snap: Snapshot): void {
    const options = snap.submissions.map(
      (s): [string, string] => [s.rid, `${s.name || shortRid(s.rid)} (${formatTime(s.createdAt)})`]
    );
    const key = options.map(o => o.join('\u0000')).join('\u0001');
    if (key !== this.optionsKey(this.submission)) {
      const chosen = this.submission.value;
      this.submission.replaceChildren(...options.map(([value, label]) => option(value, label)));
      if (options.some(([value]) => value === chosen)) {
        this.submission.value = chosen;
      }
    }
    const suggested = nextVersion(snap.releases);
    this.version.placeholder = suggested;
    if (!this.versionEdited) {
      this.version.value = suggested;
    }
  }

  private releasesTable(snap: Snapshot, names: Map<string, string>): HTMLTableElement {
    const rows = snap.releases.map(r => ({
      Version: r.version,
      Tag: r.tag ?? '',
      Note: r.note,
      Submission: names.get(r.submissionRid) ?? shortRid(r.submissionRid),
      Created: formatTime(r.createdAt),
      By: r.createdBy,
      '': r.tag === 'PRODUCTION' ? '' : button('Mark as Production', () => this.markAsProduction(r), '',
        `Move the Production tag to ${r.version}`)
    }));
    const node = table(rows, [], 'Releases', (column, value) =>
      column === 'Tag' ? tagBadge(String(value)) : value instanceof Node ? value : cellText(value));
    [...node.tBodies[0].rows].forEach((row, i) => (row.dataset.version = snap.releases[i].version));
    return node;
  }

  private deploymentsTable(deployments: LiveDeployment[]): HTMLTableElement {
    const rows = deployments.map(d => {
      const served = d.release?.version ?? '';
      const target = d.targetRelease?.version;
      return {
        Name: this.commands
          ? button(d.name, () => this.commands?.execute(OPEN_DEPLOYMENT, { rid: d.rid }), '',
            `Open ${d.name}'s page`)
          : d.name,
        'API name': d.apiName,
        Follows: d.environment,
        Serves: target && target !== served ? `${served || '—'} → ${target}` : served,
        State: d.status.state
      };
    });
    const node = table(rows, [], 'Deployments', (column, value) => {
      if (column === 'Follows') {
        return tagBadge(String(value));
      }
      if (column === 'State') {
        return badge(String(value));
      }
      return value instanceof Node ? value : cellText(value);
    });
    [...node.tBodies[0].rows].forEach((row, i) => (row.dataset.rid = deployments[i].rid));
    return node;
  }

  /** Release the chosen submission under the version, tagged Staging. */
  private async releaseToStaging(): Promise<void> {
    const objective = this.current;
    if (!objective) {
      return;
    }
    const form = this.releaseForm;
    const following = this.following('STAGING');
    const release = await form.run('Releasing to Staging…', () =>
      this.services.objectives.release(objective.rid, {
        submission: form.value('submission'),
        version: form.value('version'),
        note: form.value('note'),
        tag: 'STAGING'
      })
    );
    if (release) {
      this.notice.clear();
      this.versionEdited = false;
      (form.input('note') as HTMLInputElement).value = '';
      form.notice.show('ok', `${release.version} is released to Staging: ${upgrading(following)}`);
      await this.poll.refresh();
    }
  }

  /** The objective's deployments that follow a tag (they upgrade when it moves). */
  private following(tag: 'STAGING' | 'PRODUCTION'): LiveDeployment[] {
    return (this.snapshot?.deployments ?? []).filter(d => d.environment === tag);
  }

  /** Ask, saying which deployments will upgrade; then move the Production tag to `release`. */
  private async markAsProduction(release: Release): Promise<void> {
    const objective = this.current;
    if (!objective) {
      return;
    }
    const following = this.following('PRODUCTION');
    const current = this.snapshot?.releases.find(r => r.tag === 'PRODUCTION');
    const message = el(
      'div',
      '',
      el('p', '', `The Production tag of ${objective.name} moves ${current ? `from ${current.version} ` : ''}to ${release.version}.`),
      el('p', '', following.length
        ? `These deployments follow Production and will upgrade to ${release.version}: ${deploymentNames(following)}.`
        : 'No deployment follows Production: none will upgrade.')
    );
    const done = await confirm(`Mark ${release.version} as Production?`, message, 'Mark as Production', () =>
      this.services.objectives.promote(objective.rid, release.version), 'accept');
    if (done) {
      this.releaseForm.notice.clear();
      this.notice.show('ok', `${release.version} is now Production: ${upgrading(following)}`);
      await this.poll.refresh();
    }
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  dispose(): void {
    this.poll.dispose();
    super.dispose();
  }
}

function upgrading(deployments: LiveDeployment[]): string {
  return `${deployments.length} deployment(s) upgrading`;
}

function tagBadge(tag: string): HTMLElement | string {
  return tag ? badge(tag, tagLabel(tag)) : '';
}

function option(value: string, label: string): HTMLOptionElement {
  const node = el('option', '', label);
  node.value = value;
  return node;
}

function section(title: string, content: HTMLElement): HTMLElement {
  return attrs(el('section', 'jp-LiveML-section', el('h3', '', title), content), { 'aria-label': title });
}

/** One page per objective (restored on reload by the objective's RID or name). */
export class ReleasesPage extends MainAreaWidget<ReleasesView> {
  constructor(services: LiveML, objective = '', commands?: CommandRegistry) {
    super({ content: new ReleasesView(services, objective, commands) });
    this.id = `liveml-releases-${objective || 'all'}`;
    this.addClass('jp-LiveML-releasesPage');
    this.title.label = 'Model releases';
    this.title.closable = true;
    this.content.onObjective = chosen => {
      this.title.label = chosen ? `Releases: ${chosen.name}` : 'Model releases';
      this.title.caption = chosen ? `${chosen.namespace}/${chosen.name}\n${chosen.rid}` : '';
    };
    void this.content.poll.refresh();
  }

  get objective(): string {
    return this.content.objective;
  }
}
