import type { DeploymentDeleted, DeploymentList, LiveDeployment } from './api';
import { requestAPI } from './handler';

/** A deployment is named by its RID, API name or name (`NAMESPACE/` prefix allowed). */
function path(deployment: string, action = ''): string {
  const base = `deployments/${encodeURIComponent(deployment)}`;
  return action ? `${base}/${action}` : base;
}

/** The live deployments of the control plane inside this Jupyter server. */
export class DeploymentsService {
  /** Every deployment the caller can see (one namespace when given). */
  async list(namespace?: string): Promise<LiveDeployment[]> {
    const query = namespace ? `?namespace=${encodeURIComponent(namespace)}` : '';
    const answer = await requestAPI<DeploymentList>(`deployments${query}`);
    return answer.data;
  }

  async get(deployment: string): Promise<LiveDeployment> {
    return requestAPI<LiveDeployment>(path(deployment));
  }

  async disable(deployment: string): Promise<LiveDeployment> {
    return requestAPI<LiveDeployment>(path(deployment, 'disable'), { method: 'POST' });
  }

  async enable(deployment: string): Promise<LiveDeployment> {
    return requestAPI<LiveDeployment>(path(deployment, 'enable'), { method: 'POST' });
  }

  async delete(deployment: string): Promise<DeploymentDeleted> {
    return requestAPI<DeploymentDeleted>(path(deployment), { method: 'DELETE' });
  }
}
