from valueharms import generate
from valueharms.data.steps import target_of
from valueharms.data.vim import icl_system_prompt
from valueharms.mitigation import mitigation_run_prompt
from valueharms.runner import logged, threads

smk = snakemake  # noqa: F821
with logged(smk):
    members = []
    for m in smk.params.members:
        m = dict(m)
        icl, pairs = m.pop("icl"), m.pop("pairs")
        if icl:  # the in-context baseline's profile, built from its distribution file
            m["system"] = icl_system_prompt(target_of(icl), smk.params.icl_template)
        if pairs:  # a mitigation run whose pairs came from the correlation stage
            m["system"], m["categories"] = mitigation_run_prompt(
                smk.input.mitigation_pairs,
                m["model_id"],
                m["condition"],
                dict(smk.params.mitigation_plan),
            )
        members.append(m)
    generate.run(
        smk.input.prompts,
        smk.input.base,
        members[0]["model_id"].split("/")[0],  # the base model of the group
        members,
        dict(smk.params.bench),
        smk.params.template,
        smk.params.seed,
        dict(smk.params.model_spec),
        smk.params.backend,
        dict(smk.params.backend_settings),
        smk.config["cache_dir"],
        smk.params.batch_size,
        smk.output[0],
        threads=threads(smk),
    )
