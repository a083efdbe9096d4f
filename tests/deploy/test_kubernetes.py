"""The Kubernetes path without a cluster: the pod a training task gets under KubernetesExecutor is
built here with the cncf.kubernetes provider's own pod generator, from the plan's [deployment]
section merged into a pod template, and the DAGs parsed under KubernetesExecutor carry it through
Airflow's serialization (what the scheduler hands the executor)."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT
from training.plan import DEFAULT_PLAN_PATH, PlanError, load_plan

DEPLOYMENT = """
[deployment]
image = "registry.example.com/code-sweep:1.0"
gpu_resource = "nvidia.com/gpu"
gpus_per_task = 2
node_selector = { "nvidia.com/gpu.product" = "NVIDIA-H100-80GB-HBM3" }
tolerations = [{ key = "nvidia.com/gpu", operator = "Exists", effect = "NoSchedule" }]
"""


def plan_with(tmp_path, section: str) -> Path:
    text = DEFAULT_PLAN_PATH.read_text()
    path = tmp_path / "plan.toml"
    path.write_text(text[:text.index("[deployment]")] + section)
    return path


def test_a_training_pod_gets_the_gpus_nodes_tolerations_and_image_the_plan_names(tmp_path):
    from airflow.providers.cncf.kubernetes import pod_generator
    from airflow.providers.cncf.kubernetes.pod_generator import PodGenerator

    training_arguments = runpy.run_path(str(REPO_ROOT / "dags" / "sweep_tiers.py"))["training_arguments"]
    plan = load_plan(plan_with(tmp_path, DEPLOYMENT))
    tier = plan.tiers["large"]
    arguments = training_arguments(plan, tier, tier.models[0], executor="KubernetesExecutor")
    template = Path(pod_generator.__file__).with_name("pod_template_file_examples") / "dags_in_image_template.yaml"
    pod = PodGenerator.construct_pod(
        dag_id="sweep_large", task_id="train.grid", pod_id="sweep-large-train", try_number=1,
        kube_image="apache/airflow:3.3.2", date=None, args=["airflow", "tasks", "run", "sweep_large"],
        pod_override_object=arguments["executor_config"]["pod_override"],
        base_worker_pod=PodGenerator.deserialize_model_file(str(template)), namespace="sweep",
        scheduler_job_id="1", run_id="manual__1", map_index=3)
    container = pod.spec.containers[0]
    assert container.name == "base" and container.image == "registry.example.com/code-sweep:1.0"
    assert container.resources.limits == {"nvidia.com/gpu": "2"} == container.resources.requests
    assert container.args == ["airflow", "tasks", "run", "sweep_large"]
    assert pod.spec.node_selector == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert [(t.key, t.operator, t.effect) for t in pod.spec.tolerations] == [("nvidia.com/gpu", "Exists", "NoSchedule")]
    assert pod.metadata.namespace == "sweep" and pod.metadata.labels["dag_id"] == "sweep_large"
    assert pod.spec.volumes, "the template's volumes (logs, config) are kept"
    assert "executor_config" not in training_arguments(plan, tier, tier.models[0], executor="CeleryExecutor")


@pytest.mark.parametrize("section, problem", [
    ('[deployment]\ngpus_per_task = -1\n', "deployment.gpus_per_task"),
    ('[deployment]\nnode_selector = "gpu"\n', "deployment.node_selector"),
    ('[deployment]\ntolerations = [{ key = "a", efect = "NoSchedule" }]\n', "deployment.tolerations[0].efect"),
    ('[deployment]\ngpu = 1\n', "deployment.gpu"),
])
def test_a_wrong_deployment_section_is_named(tmp_path, section, problem):
    with pytest.raises(PlanError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        load_plan(plan_with(tmp_path, section))


SERIALIZED = """
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = DagSerialization.from_dict(DagSerialization.to_dict(bag.dags["sweep_large"]))
task = dag.get_task("Salesforce_codet5-large.train")
pod = task.executor_config["pod_override"]
print(json.dumps({"limits": pod.spec.containers[0].resources.limits, "name": pod.spec.containers[0].name}))
"""


@pytest.mark.slow
def test_the_dags_under_kubernetes_executor_carry_the_pod_through_serialization(tmp_path):
    env = {**os.environ, "AIRFLOW__CORE__EXECUTOR": "KubernetesExecutor",
           "SWEEP_PLAN_FILE": str(plan_with(tmp_path, DEPLOYMENT))}
    done = subprocess.run([sys.executable, "-c", SERIALIZED, str(REPO_ROOT / "dags")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"limits": {"nvidia.com/gpu": "2"}, "name": "base"}


def test_the_helm_values_run_kubernetes_executor_with_the_store_and_no_shared_volume():
    import yaml

    from training.settings import ENVIRONMENT

    values = yaml.safe_load((REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text())
    assert values["executor"] == "KubernetesExecutor"
    assert values["images"]["airflow"]["repository"] and values["dags"]["persistence"]["enabled"] is False
    known = {variable.name for variable in ENVIRONMENT} | {"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"}
    names = {entry["name"] for entry in values["env"]}
    assert names <= known and "SWEEP_ARTIFACTS_URL" in names
    store = next(entry["value"] for entry in values["env"] if entry["name"] == "SWEEP_ARTIFACTS_URL")
    assert store.startswith("s3://")
    assert "sweep-runtime" in values["extraEnvFrom"]  # SWEEP_DATABASE_URL and the store's credentials
    assert "airflow pools set gpu" in (REPO_ROOT / "deploy" / "helm" / "values.yaml").read_text()
