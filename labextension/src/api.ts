/**
 * The deployment resource as `liveml_ext/openapi.json` documents it (components/schemas).
 *
 * Written by hand; tests/test_labextension.py checks every declaration marked `openapi:` against
 * that schema (its fields, their types, which are required, and the enums), so they cannot drift.
 */

/** openapi: DescribeLiveDeployment.environment */
export type Environment = 'STAGING' | 'PRODUCTION';

/** openapi: DeploymentStatus.state */
export type DeploymentState = 'STARTING' | 'ACTIVE' | 'DEGRADED' | 'FAILED' | 'DISABLED';

/** openapi: RolloutStatus.state */
export type RolloutState = 'PROGRESSING' | 'COMPLETE' | 'FAILED';

/** openapi: DescribeShadow.state */
export type ShadowState = 'STARTING' | 'ACTIVE' | 'FAILED';

/** openapi: ErrorEnvelope.errorCode */
export type ErrorCode =
  | 'CONFLICT'
  | 'CUSTOM_CLIENT'
  | 'INTERNAL'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED'
  | 'REQUEST_ENTITY_TOO_LARGE'
  | 'SERVICE_UNAVAILABLE'
  | 'TIMEOUT'
  | 'TOO_MANY_REQUESTS'
  | 'UNAUTHORIZED';

/** openapi: ReleaseRef */
export interface ReleaseRef {
  rid: string;
  version: string;
  submissionRid: string;
  modelUuid: string;
}

/** openapi: ReplicaStatus */
export interface ReplicaStatus {
  nodeId: string;
  state: string;
  health: string;
  releaseVersion: string;
  reason?: string;
  restarts?: number;
  url?: string;
}

/** openapi: RolloutStatus */
export interface RolloutStatus {
  releaseVersion: string;
  generation: number;
  state: RolloutState;
  updatedReplicas: number;
  desiredReplicas: number;
  failures?: number;
  reason?: string;
}

/** openapi: DeploymentStatus */
export interface DeploymentStatus {
  state: DeploymentState;
  isReady: boolean;
  desiredReplicas?: number;
  readyReplicas?: number;
  load?: number;
  reason?: string;
  replicas?: ReplicaStatus[];
  rollout?: RolloutStatus | null;
  shadow?: Shadow | null;
}

/** openapi: DescribeShadow */
export interface Shadow {
  releaseRid: string;
  releaseVersion: string;
  servingVersion?: string;
  sample: number;
  replicas: number;
  overrides?: Record<string, unknown>;
  readyReplicas?: number;
  state?: ShadowState;
  reason?: string;
  startedAt: string;
  until?: string | null;
  mirrored?: number;
  answered?: number;
  errors?: number;
  skipped?: number;
  p50Ms?: number | null;
  p99Ms?: number | null;
  liveP50Ms?: number | null;
  liveP99Ms?: number | null;
}

/** openapi: RuntimeConfiguration */
export interface RuntimeConfiguration {
  cpu?: number;
  memory?: string;
  gpu?: number;
  gpuType?: string;
  minReplicas?: number;
  maxReplicas?: number;
  threadCount?: number;
  queueSize?: number;
  env?: Record<string, string>;
  scaleUpLoadThreshold?: number;
  scaleUpDelay?: number;
  scaleDownDelay?: number;
  capture?: CaptureMode;
  captureSample?: number;
  captureMaxBytes?: number;
}

/** openapi: RuntimeConfiguration.capture */
export type CaptureMode = 'off' | 'request' | 'response' | 'both';

/** openapi: DescribeLiveDeployment */
export interface LiveDeployment {
  rid: string;
  name: string;
  description: string;
  apiName: string;
  namespace: string;
  objectiveRid: string;
  environment: Environment;
  enabled: boolean;
  release: ReleaseRef | null;
  targetRelease: ReleaseRef | null;
  replicaProfile: string;
  resourceProfile: string;
  runtimeConfiguration: RuntimeConfiguration;
  generation: number;
  status: DeploymentStatus;
  createdAt: string;
  createdBy: string;
  updatedAt: string;
}

/** openapi: DeploymentDeleted */
export interface DeploymentDeleted {
  rid: string;
  deleted: boolean;
}

/** openapi: ErrorEnvelope */
export interface ErrorEnvelope {
  errorCode: ErrorCode;
  errorName: string;
  errorInstanceId: string;
  parameters: { message: string; [key: string]: unknown };
}

/** openapi: listDeployments */
export interface DeploymentList {
  data: LiveDeployment[];
}

/** Every list answer of the API: `{"data": [...]}`. */
export interface DataList<T> {
  data: T[];
}

/** openapi: MetricSample.kind */
export type MetricKind = 'host' | 'container' | 'requests';

/** openapi: RuntimeOverrides */
export interface RuntimeOverrides {
  cpu?: number | null;
  memory?: string | null;
  gpu?: number | null;
  gpuType?: string | null;
  minReplicas?: number | null;
  maxReplicas?: number | null;
  threadCount?: number | null;
  queueSize?: number | null;
  env?: Record<string, string> | null;
  scaleUpLoadThreshold?: number | null;
  scaleUpDelay?: number | null;
  scaleDownDelay?: number | null;
  capture?: CaptureMode | null;
  captureSample?: number | null;
  captureMaxBytes?: number | null;
}

/** openapi: CreateLiveDeployment */
export interface CreateLiveDeployment {
  objective: string;
  name: string;
  description?: string;
  apiName?: string | null;
  environment?: Environment;
  replicaProfile?: string;
  resourceProfile?: string;
  runtimeConfiguration?: RuntimeOverrides | null;
}

/** openapi: UpdateLiveDeployment */
export interface UpdateLiveDeployment {
  name?: string | null;
  description?: string | null;
  apiName?: string | null;
  replicaProfile?: string | null;
  resourceProfile?: string | null;
  runtimeConfiguration?: RuntimeOverrides | null;
}

/** openapi: SetApiName */
export interface SetApiName {
  apiName: string;
}

/** openapi: DescribeReplicaProfile */
export interface ReplicaProfile {
  name: string;
  minReplicas: number;
  maxReplicas: number;
  description?: string;
}

/** openapi: DescribeResourceProfile */
export interface ResourceProfile {
  name: string;
  cpu: number;
  memory: string;
  gpu?: number;
  gpuType?: string;
  description?: string;
}

/** openapi: DescribeProfiles */
export interface Profiles {
  replicaProfiles: ReplicaProfile[];
  resourceProfiles: ResourceProfile[];
}

/** openapi: DescribeObjective */
export interface Objective {
  rid: string;
  name: string;
  namespace: string;
  description: string;
  createdAt: string;
  createdBy: string;
}

/** openapi: DescribeSubmission */
export interface Submission {
  rid: string;
  objectiveRid: string;
  name: string;
  modelUuid: string;
  artifactSha256: string;
  artifactBytes: number;
  adapter: string;
  api: Record<string, unknown>;
  requirements: Record<string, string>;
  python: string;
  createdAt: string;
  createdBy: string;
}

/** openapi: DescribeRelease */
export interface Release {
  rid: string;
  objectiveRid: string;
  submissionRid: string;
  version: string;
  note: string;
  tag: Environment | null;
  createdAt: string;
  createdBy: string;
}

/** openapi: CreateRelease */
export interface CreateRelease {
  submission: string;
  version: string;
  note?: string;
  tag?: Environment | null;
}

/** openapi: TagEvent */
export interface TagEvent {
  releaseRid: string;
  version: string;
  tag: Environment;
  at: string;
  by: string;
}

/** openapi: DescribeEvent */
export interface DeploymentEvent {
  at: string;
  kind: string;
  message: string;
  fields?: Record<string, unknown>;
}

/** openapi: LogPage */
export interface LogPage {
  data: Record<string, unknown>[];
  nextPageToken?: string | null;
}

/** openapi: MetricSample */
export interface MetricSample {
  time: string;
  nodeId: string;
  kind: MetricKind;
  name: string;
  value: number;
  unit: string;
  resolutionSeconds: number;
}

/** openapi: TransformRequest */
export interface TransformRequest {
  requestData: Record<string, unknown>[];
  requestParams?: Record<string, unknown>;
}

/** openapi: TransformResponse */
export interface TransformResponse {
  modelUuid: string;
  responseData: Record<string, unknown>[];
}

/** A model's declared input or output (DescribeSubmission.api, from `ModelAdapter.api()`). */
export interface ModelPort {
  name: string;
  kind: 'tabular' | 'parameter';
  columns?: { name: string; type: string; required?: boolean }[];
  type?: string;
  default?: unknown;
  required?: boolean;
}

/** DescribeSubmission.api */
export interface ModelApi {
  inputs: ModelPort[];
  outputs: ModelPort[];
}
