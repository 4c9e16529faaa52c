/**
 * The deployment resource as `liveml_ext/openapi.json` documents it (components/schemas).
 *
 * Written by hand; tests/test_labextension.py checks every interface here against the schema of
 * the same name (its fields, which are required, and the enums).
 */

/** openapi: DescribeLiveDeployment.environment */
export type Environment = 'STAGING' | 'PRODUCTION';

/** openapi: DeploymentStatus.state */
export type DeploymentState = 'STARTING' | 'ACTIVE' | 'DEGRADED' | 'FAILED' | 'DISABLED';

/** openapi: RolloutStatus.state */
export type RolloutState = 'PROGRESSING' | 'COMPLETE' | 'FAILED';

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
}

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
