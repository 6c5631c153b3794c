export { startCluster } from './primary.js'
export { joinCluster } from './worker.js'
export type {
  Cluster,
  ClusterController,
  ClusterMember,
  ClusterOptions,
  ClusterShutdownReport,
  ClusterStats,
  JoinOptions,
  ListeningServer,
  MetricsRegistry,
  ReloadReport,
  WorkerExit,
  WorkerRef,
  WorkerReload,
  WorkerStats,
} from './types.js'
