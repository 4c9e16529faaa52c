/**
 * A deployment's page in the main area: Overview, Runtime configuration, Query, Logs & Metrics.
 * One `DeploymentModel` per page polls the deployment (with back-off, standing by while the page
 * is hidden) and tells the tabs when it changed.
 */
import { MainAreaWidget } from '@jupyterlab/apputils';
import { Message } from '@lumino/messaging';
import { Poll } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';
import { BoxPanel, TabPanel, Widget } from '@lumino/widgets';

import type { LiveDeployment, ModelApi } from './api';
import { ConfigTab } from './config';
import { el, errorMessage } from './dom';
import { LiveMLError } from './handler';
import { ObserveTab } from './observe';
import { OverviewTab } from './overview';
import { QueryTab } from './query';
import type { LiveML } from './service';

const INTERVAL = 2000;
const MAX_INTERVAL = 60000;

/** One deployment as a page sees it: the latest description, re-read by a poll. */
export class DeploymentModel {
  readonly poll: Poll;
  private _doc: LiveDeployment | null = null;
  private _api: Promise<ModelApi | null> | null = null;
  private _apiFor = '';
  private readonly _changed = new Signal<this, LiveDeployment>(this);
  private readonly _failed = new Signal<this, unknown>(this);
  private readonly _deleted = new Signal<this, void>(this);
  /** Set by the page: true while nobody can see it (the poll stands by). */
  hidden: () => boolean = () => false;
  /** Set by the page: bring one of its tabs forward, by title. */
  showTab: (title: string) => void = () => undefined;
  gone = false;

  constructor(
    readonly rid: string,
    readonly services: LiveML
  ) {
    this.poll = new Poll({
      factory: () => this.refresh(),
      frequency: { interval: INTERVAL, backoff: true, max: MAX_INTERVAL },
      standby: () => this.gone || this.hidden() || document.visibilityState === 'hidden',
      name: `liveml:deployment:${rid}`
    });
  }

  get doc(): LiveDeployment | null {
    return this._doc;
  }

  /** The latest description, after each read or change. */
  get changed(): ISignal<this, LiveDeployment> {
    return this._changed;
  }

  /** A read failed (shown by the page; the poll backs off). */
  get failed(): ISignal<this, unknown> {
    return this._failed;
  }

  /** The deployment was deleted (here or elsewhere): its RID answers 404 for good. */
  get deleted(): ISignal<this, void> {
    return this._deleted;
  }

  /** Read the deployment now. */
  async refresh(): Promise<void> {
    if (this.gone) {
      return;
    }
    try {
      this.update(await this.services.deployments.get(this.rid));
    } catch (error) {
      if (error instanceof LiveMLError && error.status === 404) {
        this.markDeleted();
        return;
      }
      this._failed.emit(error);
      throw error;
    }
  }

  /** Take a description an action answered (so the page shows it at once). */
  update(doc: LiveDeployment): void {
    this._doc = doc;
    this._changed.emit(doc);
  }

  markDeleted(): void {
    if (!this.gone) {
      this.gone = true;
      this._deleted.emit();
    }
  }

  /**
   * The model API (`ModelAdapter.api()`) of the release served (or the target while none is):
   * its named inputs and outputs, read from the release's submission once per release.
   */
  modelApi(): Promise<ModelApi | null> {
    const release = this._doc?.release ?? this._doc?.targetRelease;
    if (!this._doc || !release) {
      return Promise.resolve(null);
    }
    if (!this._api || this._apiFor !== release.submissionRid) {
      const objective = this._doc.objectiveRid;
      this._apiFor = release.submissionRid;
      this._api = this.services.objectives
        .submissions(objective)
        .then(subs => {
          const sub = subs.find(s => s.rid === release.submissionRid);
          return sub ? (sub.api as unknown as ModelApi) : null;
        })
        .catch(error => {
          this._api = null;
          throw error;
        });
    }
    return this._api;
  }

  dispose(): void {
    this.poll.dispose();
    Signal.clearData(this);
  }
}

/** The tabs of a deployment's page, in order; each is a widget over the page's model. */
const TABS: [string, new (model: DeploymentModel) => Widget][] = [
  ['Overview', OverviewTab],
  ['Runtime configuration', ConfigTab],
  ['Query', QueryTab],
  ['Logs & Metrics', ObserveTab]
];

/** The page's content: a banner (read failures, deletion) over the four tabs. */
export class DeploymentView extends BoxPanel {
  readonly tabs = new TabPanel();
  private readonly banner = el('div', 'jp-LiveML-banner');
  private readonly bannerBox = new Widget({ node: el('div', 'jp-LiveML-bannerBox', this.banner) });

  constructor(readonly model: DeploymentModel) {
    super({ direction: 'top-to-bottom', spacing: 0 });
    this.addClass('jp-LiveML-deploymentView');
    this.banner.setAttribute('role', 'alert');
    this.bannerBox.hide();
    this.addWidget(this.bannerBox);
    BoxPanel.setStretch(this.bannerBox, 0);
    this.addWidget(this.tabs);
    BoxPanel.setStretch(this.tabs, 1);
    this.tabs.addClass('jp-LiveML-tabs');
    for (const [title, Tab] of TABS) {
      const tab = new Tab(model);
      tab.title.label = title;
      tab.addClass('jp-LiveML-tab');
      this.tabs.addWidget(tab);
    }
    model.showTab = title => {
      const index = this.tabs.widgets.findIndex(w => w.title.label === title);
      if (index >= 0) {
        this.tabs.currentIndex = index;
      }
    };
    model.changed.connect(() => {
      if (!model.gone) {
        this.bannerBox.hide();
      }
    }, this);
    model.failed.connect((_, error) => {
      this.banner.className = 'jp-LiveML-banner jp-LiveML-notice-error';
      this.banner.textContent = `${errorMessage(error)} (retrying by itself)`;
      this.bannerBox.show();
    }, this);
    model.deleted.connect(() => {
      this.banner.className = 'jp-LiveML-banner jp-LiveML-notice-warn';
      this.banner.textContent = `This deployment was deleted: ${model.rid} answers 404 for good. Close this page.`;
      this.bannerBox.show();
      this.tabs.node.classList.add('jp-mod-deleted');
    }, this);
  }

  dispose(): void {
    this.model.dispose();
    super.dispose();
  }
}

/** The main-area page of one deployment (title: its name; restored on reload by its RID). */
export class DeploymentPage extends MainAreaWidget<DeploymentView> {
  constructor(rid: string, services: LiveML) {
    const model = new DeploymentModel(rid, services);
    super({ content: new DeploymentView(model) });
    this.id = `liveml-deployment-${rid.split('.').pop()}`;
    this.addClass('jp-LiveML-page');
    this.title.label = 'Live deployment';
    this.title.closable = true;
    model.hidden = () => !this.isVisible;
    model.changed.connect((_, doc) => {
      this.title.label = doc.name;
      this.title.caption = `${doc.name} (${doc.apiName})\n${doc.rid}`;
    }, this);
    void model.poll.refresh();
  }

  get rid(): string {
    return this.content.model.rid;
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.content.model.poll.refresh();
  }
}
