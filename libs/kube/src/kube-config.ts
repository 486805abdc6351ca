import { KubeConfig } from '@kubernetes/client-node';

/** KUBECONFIG path when given (local stack, tests), in-cluster credentials otherwise. */
export function loadKubeConfig(path: string | undefined): KubeConfig {
  const config = new KubeConfig();
  if (path) config.loadFromFile(path);
  else config.loadFromCluster();
  return config;
}
