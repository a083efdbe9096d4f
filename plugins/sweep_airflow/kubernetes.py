"""Training tasks on Kubernetes: under KubernetesExecutor every training task runs in a pod of its
own, and the plan's [deployment] section says what that pod needs beyond the chart's pod template:
the GPUs (resource name and count), the nodes it may land on, the taints it tolerates and the image.
Airflow's executor merges this override into the template with the cncf.kubernetes provider's pod
generator, the same code the tests build it with."""

from __future__ import annotations

from training.plan import Deployment


def on_kubernetes(executor: str) -> bool:
    """Whether [core] executor names KubernetesExecutor (alone, or among several)."""
    return any(name.strip().split(".")[-1].split(":")[-1] == "KubernetesExecutor" for name in executor.split(","))


def training_pod_override(deployment: Deployment) -> dict:
    """The executor_config of a training task: {"pod_override": V1Pod}. Its container is named
    "base", as the executor requires, so the generator merges it into the template's."""
    from kubernetes.client import models as k8s

    gpus = {deployment.gpu_resource: str(deployment.gpus_per_task)} if deployment.gpus_per_task else None
    container = k8s.V1Container(name="base", image=deployment.image,
                                resources=k8s.V1ResourceRequirements(limits=gpus, requests=gpus) if gpus else None)
    tolerations = [k8s.V1Toleration(**dict(fields)) for fields in deployment.tolerations] or None
    spec = k8s.V1PodSpec(containers=[container], node_selector=dict(deployment.node_selector) or None,
                         tolerations=tolerations)
    return {"pod_override": k8s.V1Pod(spec=spec)}
