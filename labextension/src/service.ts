/**
 * Typed services over the liveml REST API, one class per resource; they only call
 * `requestAPI` (handler.ts), so Jupyter's base URL, token and XSRF handling apply to all.
 */
import type {
  CreateLiveDeployment,
  CreateRelease,
  DataList,
  DeploymentDeleted,
  DeploymentEvent,
  DeploymentList,
  LiveDeployment,
  LogPage,
  MetricKind,
  MetricSample,
  Objective,
  Profiles,
  Release,
  RuntimeConfiguration,
  RuntimeOverrides,
  Submission,
  TagEvent,
  TransformResponse,
  UpdateLiveDeployment
} from './api';
import { ServerConnection } from '@jupyterlab/services';

import { query, requestAPI, requestInference, requestText } from './handler';

/** A deployment is named by its RID, API name or name (`NAMESPACE/` prefix allowed). */
function deploymentPath(deployment: string, action = ''): string {
  const base = `deployments/${encodeURIComponent(deployment)}`;
  return action ? `${base}/${action}` : base;
}

/** An objective is named by its RID, `NAMESPACE/NAME` or a unique name. */
function objectivePath(objective: string, action = ''): string {
  const base = `objectives/${encodeURIComponent(objective)}`;
  return action ? `${base}/${action}` : base;
}

/** A time window: `since` back from now (15m, 1h, 7d), or `start`..`end` (ISO 8601). */
export interface TimeRange {
  since?: string;
  start?: string;
  end?: string;
}

/** What a log search asks for (`query` is the query language: field:value, quotes, AND/OR/NOT). */
export interface LogSearch extends TimeRange {
  query?: string;
  columns?: string[];
  limit?: number;
  pageToken?: string;
}

function logParams(search: LogSearch): Record<string, string | number | undefined> {
  return {
    since: search.since,
    start: search.start,
    end: search.end,
    query: search.query,
    columns: search.columns?.join(','),
    limit: search.limit,
    pageToken: search.pageToken
  };
}

/** A service calls the API with its connection settings (Jupyter's own by default). */
abstract class Service {
  constructor(protected readonly settings?: ServerConnection.ISettings) {}

  protected api<T>(path: string, init: RequestInit & { json?: unknown } = {}): Promise<T> {
    return requestAPI<T>(path, init, this.settings);
  }
}

/** The live deployments of the control plane inside this Jupyter server. */
export class DeploymentsService extends Service {
  /** Every deployment the caller can see (one namespace when given). */
  async list(namespace?: string): Promise<LiveDeployment[]> {
    const answer = await this.api<DeploymentList>(`deployments${query({ namespace })}`);
    return answer.data;
  }

  async get(deployment: string): Promise<LiveDeployment> {
    return this.api<LiveDeployment>(deploymentPath(deployment));
  }

  async create(spec: CreateLiveDeployment): Promise<LiveDeployment> {
    return this.api<LiveDeployment>('deployments', { method: 'POST', json: spec });
  }

  /** Change name, description, API name, profiles or explicit overrides (re-rolls when needed). */
  async update(deployment: string, change: UpdateLiveDeployment): Promise<LiveDeployment> {
    return this.api<LiveDeployment>(deploymentPath(deployment), { method: 'PATCH', json: change });
  }

  async setApiName(deployment: string, apiName: string): Promise<LiveDeployment> {
    return this.api<LiveDeployment>(deploymentPath(deployment, 'api-name'), {
      method: 'PUT',
      json: { apiName }
    });
  }

  /** The effective configuration (profiles with the overrides applied). */
  async runtimeConfiguration(deployment: string): Promise<RuntimeConfiguration> {
    return this.api<RuntimeConfiguration>(deploymentPath(deployment, 'runtime-configuration'));
  }

  /** Set the explicit overrides (unset fields fall back to the profiles). */
  async setOverrides(deployment: string, overrides: RuntimeOverrides): Promise<LiveDeployment> {
    return this.update(deployment, { runtimeConfiguration: overrides });
  }

  async disable(deployment: string): Promise<LiveDeployment> {
    return this.api<LiveDeployment>(deploymentPath(deployment, 'disable'), { method: 'POST' });
  }

  async enable(deployment: string): Promise<LiveDeployment> {
    return this.api<LiveDeployment>(deploymentPath(deployment, 'enable'), { method: 'POST' });
  }

  async delete(deployment: string): Promise<DeploymentDeleted> {
    return this.api<DeploymentDeleted>(deploymentPath(deployment), { method: 'DELETE' });
  }
}

/** A deployment's events: rollout steps, scaling, replica failures, state changes (newest first). */
export class EventsService extends Service {
  async list(deployment: string, limit = 50): Promise<DeploymentEvent[]> {
    const path = `${deploymentPath(deployment, 'events')}${query({ limit })}`;
    return (await this.api<DataList<DeploymentEvent>>(path)).data;
  }
}

/** A deployment's service logs (7 days kept): search, page, download. */
export class LogsService extends Service {
  async search(deployment: string, search: LogSearch = {}): Promise<LogPage> {
    return this.api<LogPage>(`${deploymentPath(deployment, 'logs')}${query(logParams(search))}`);
  }

  /** Every matching record as text (what the download button saves). */
  async download(deployment: string, search: LogSearch = {}): Promise<string> {
    const { limit: _limit, pageToken: _token, ...rest } = search;
    const params = query(logParams(rest));
    return requestText(`${deploymentPath(deployment, 'logs/download')}${params}`, this.settings);
  }
}

/** Host, inference-container and request metrics of a deployment, per replica. */
export class MetricsService extends Service {
  async get(
    deployment: string,
    range: TimeRange & { kind?: MetricKind; node?: string } = {}
  ): Promise<MetricSample[]> {
    const path = `${deploymentPath(deployment, 'metrics')}${query({ ...range })}`;
    return (await this.api<DataList<MetricSample>>(path)).data;
  }
}

/** The replica and resource profiles a deployment may name. */
export class ProfilesService extends Service {
  async get(): Promise<Profiles> {
    return this.api<Profiles>('profiles');
  }
}

/** Modeling objectives, their submissions (model versions), releases and tags. */
export class ObjectivesService extends Service {
  async list(): Promise<Objective[]> {
    return (await this.api<DataList<Objective>>('objectives')).data;
  }

  async get(objective: string): Promise<Objective> {
    return this.api<Objective>(objectivePath(objective));
  }

  async submissions(objective: string): Promise<Submission[]> {
    return (await this.api<DataList<Submission>>(objectivePath(objective, 'submissions'))).data;
  }

  async releases(objective: string): Promise<Release[]> {
    return (await this.api<DataList<Release>>(objectivePath(objective, 'releases'))).data;
  }

  async tagHistory(objective: string): Promise<TagEvent[]> {
    return (await this.api<DataList<TagEvent>>(objectivePath(objective, 'tag-history'))).data;
  }

  async release(objective: string, spec: CreateRelease): Promise<Release> {
    return this.api<Release>(objectivePath(objective, 'releases'), { method: 'POST', json: spec });
  }

  /** Mark as Production: the Production tag moves to this release. */
  async promote(objective: string, version: string): Promise<Release> {
    const path = objectivePath(objective, `releases/${encodeURIComponent(version)}/promote`);
    return this.api<Release>(path, { method: 'POST' });
  }

  async tag(objective: string, version: string, tag: 'STAGING' | 'PRODUCTION'): Promise<Release> {
    const path = objectivePath(objective, `releases/${encodeURIComponent(version)}/tag`);
    return this.api<Release>(path, { method: 'PUT', json: { tag } });
  }
}

/** Queries to a deployment's inference endpoints. */
export class InferenceService extends Service {
  /** v1: rows in, rows out (a model with one tabular input and output). */
  async transform(
    rid: string,
    rows: Record<string, unknown>[],
    params: Record<string, unknown> = {}
  ): Promise<TransformResponse> {
    const body = { requestData: rows, requestParams: params };
    return requestInference<TransformResponse>(rid, body, false, this.settings);
  }

  /** v2: one key per named input of the model's `api()`; answers one key per output. */
  async transformV2(rid: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
    return requestInference<Record<string, unknown>>(rid, body, true, this.settings);
  }
}

/** Every service, made once and handed to the widgets (`settings`: another server, in tests). */
export class LiveML {
  readonly deployments: DeploymentsService;
  readonly events: EventsService;
  readonly logs: LogsService;
  readonly metrics: MetricsService;
  readonly profiles: ProfilesService;
  readonly objectives: ObjectivesService;
  readonly inference: InferenceService;

  constructor(settings?: ServerConnection.ISettings) {
    this.deployments = new DeploymentsService(settings);
    this.events = new EventsService(settings);
    this.logs = new LogsService(settings);
    this.metrics = new MetricsService(settings);
    this.profiles = new ProfilesService(settings);
    this.objectives = new ObjectivesService(settings);
    this.inference = new InferenceService(settings);
  }
}
