from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/demo.smk"
include: "workflow/rules/dataset.smk"
include: "workflow/rules/faces.smk"
include: "workflow/rules/frontalize.smk"
include: "workflow/rules/clips.smk"
include: "workflow/rules/targets.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/export.smk"


rule all:
    input:
        "results/report.html",


# A run the dataset audit stopped ends with its findings, not with Snakemake's error block.
onerror:
    sys.stderr.write(plan.audit_stop(STARTED))
