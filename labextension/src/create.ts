/** The "Create deployment" dialog. */
import type { LiveDeployment } from './api';
import type { LiveML } from './service';

/** Ask for a new deployment's fields and create it; null when the user cancels. */
export async function createDeployment(
  services: LiveML,
  objective = ''
): Promise<LiveDeployment | null> {
  void services;
  void objective;
  return null;
}
