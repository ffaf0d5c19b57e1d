#!/usr/bin/env python3
"""Each function's environment, as template.yaml declares it, for the local stacks: what ships
is what runs locally.

A function's environment is the template's Globals merged with the function's own Environment,
with the parameters at their defaults or the values given, `!Ref`, `!GetAtt`, `!Sub`, `!If`
and the conditions resolved against the local resources (table names, secret ARNs, the API's
local URL), plus what Lambda itself derives from the template (the log format and level, the
memory size). Nothing else: a variable the template forgets is missing here too, and the
function fails locally as it would deployed.

Two kinds of values may be given by the caller, as with `sam deploy`:
  - template parameters: `PARAMETER_OVERRIDES="AllowedOrigins=http://localhost:3000 ..."`, or a
    variable the template sets straight from one parameter, by that variable's name
    (`ALLOWED_ORIGINS=...` sets AllowedOrigins); checked against the parameter's AllowedValues
    and AllowedPattern, as CloudFormation checks them;
  - the tuning settings that the code lists with defaults (shared/src/functions.rs, `TUNING`:
    token lifetimes, limits), which the template leaves to their defaults: given by name, they
    reach every function.
Table names and secret ids always come from the local resources, never from the caller.

    template_env.py --resources FILE --api-url URL --out DIR [--tuning NAME,...]
                    [--bootstraps DIR --exec PREFIX]
writes DIR/<binary>.env (NAME=value lines) for every function, and with --bootstraps also
DIR/<binary>.exec (the command that runs the function's built bootstrap, one word a line).
"""

import argparse
import json
import os
import re
import shlex
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "template.yaml")
NO_VALUE = object()  # AWS::NoValue: the property (here, the variable) is left out


class TemplateError(Exception):
    pass


def load_template(path=TEMPLATE):
    from cfnlint.decode import decode

    template, problems = decode(path)
    if problems:
        raise TemplateError(f"{path} does not parse: {problems}")
    return template


class Resolver:
    """Resolves the intrinsic functions the template's environments use, for one local stack."""

    def __init__(self, template, parameters, resources, attributes, pseudo):
        self.template = template
        self.parameters = parameters
        self.resources = resources
        self.attributes = attributes
        self.pseudo = pseudo
        self.conditions = template.get("Conditions", {})

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.resources:
            return self.resources[name]
        raise TemplateError(f"!Ref {name}: no local value for it")

    def get_att(self, target):
        name = ".".join(target) if isinstance(target, list) else target
        if name not in self.attributes:
            raise TemplateError(f"!GetAtt {name}: no local value for it")
        return self.attributes[name]

    def sub(self, args):
        text, variables = (args, {}) if isinstance(args, str) else (args[0], args[1])
        values = {key: self.value(node) for key, node in variables.items()}

        def replace(match):
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return values[name]
            if "." in name and name.split(".", 1)[0] in self.resources:
                return self.get_att(name)
            return self.ref(name)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def condition(self, name):
        if name not in self.conditions:
            raise TemplateError(f"condition {name} is not defined")
        return self.truth(self.conditions[name])

    def truth(self, node):
        (function, args), = node.items()
        if function == "Fn::Equals":
            return self.value(args[0]) == self.value(args[1])
        if function == "Fn::Not":
            return not self.truth(args[0])
        if function == "Fn::And":
            return all(self.truth(arg) for arg in args)
        if function == "Fn::Or":
            return any(self.truth(arg) for arg in args)
        if function == "Condition":
            return self.condition(args)
        raise TemplateError(f"{function} in a condition is not supported locally")

    def value(self, node):
        if isinstance(node, bool):
            return "true" if node else "false"
        if isinstance(node, (int, float)):
            return str(node)
        if isinstance(node, str):
            return node
        if isinstance(node, dict) and len(node) == 1:
            (function, args), = node.items()
            if function == "Ref":
                return self.ref(args)
            if function == "Fn::GetAtt":
                return self.get_att(args)
            if function == "Fn::Sub":
                return self.sub(args)
            if function == "Fn::If":
                return self.value(args[1] if self.condition(args[0]) else args[2])
            if function == "Fn::Join":
                return args[0].join(self.value(part) for part in args[1])
            if function == "Condition":
                return "true" if self.condition(args) else "false"
        raise TemplateError(f"{json.dumps(node)} is not supported locally")


def functions_of(template):
    """{binary: (logical id, resource)} for every AWS::Serverless::Function."""
    return {
        res["Metadata"]["BuildProperties"]["Binary"]: (logical_id, res)
        for logical_id, res in template["Resources"].items()
        if isinstance(res, dict) and res.get("Type") == "AWS::Serverless::Function"
    }


def parameter_values(template, given):
    """Each parameter at its default or the value given, checked as CloudFormation checks it."""
    declared = template.get("Parameters", {})
    unknown = set(given) - set(declared)
    if unknown:
        raise TemplateError(f"no such template parameter: {', '.join(sorted(unknown))}")
    values = {}
    for name, parameter in declared.items():
        if name in given:
            value = given[name]
        elif "Default" in parameter:
            value = str(parameter["Default"])
        else:
            raise TemplateError(f"parameter {name} has no default: give it a value")
        allowed = parameter.get("AllowedValues")
        if allowed is not None and value not in [str(v) for v in allowed]:
            raise TemplateError(f"parameter {name}: {value!r} is not one of {allowed}")
        pattern = parameter.get("AllowedPattern")
        if pattern is not None and not re.fullmatch(pattern, value):
            raise TemplateError(f"parameter {name}: {value!r} does not match {pattern}")
        values[name] = value
    return values


def parameters_by_variable(template):
    """The variables the template sets straight from one parameter (`X: !Ref Param`), anywhere."""
    environments = [template["Globals"]["Function"].get("Environment", {}).get("Variables", {})]
    environments += [res["Properties"].get("Environment", {}).get("Variables", {})
                     for _, res in functions_of(template).values()]
    declared = template.get("Parameters", {})
    mapping = {}
    for variables in environments:
        for variable, node in variables.items():
            if isinstance(node, dict) and node.get("Ref") in declared:
                mapping[variable] = node["Ref"]
    return mapping


def given_parameters(template, environ):
    """Parameter values from PARAMETER_OVERRIDES and from variables named after the variable a
    parameter sets; PARAMETER_OVERRIDES wins."""
    given = {}
    for variable, parameter in parameters_by_variable(template).items():
        if variable in environ:
            given[parameter] = environ[variable]
    for pair in shlex.split(environ.get("PARAMETER_OVERRIDES", "")):
        name, _, value = pair.partition("=")
        given[name.removeprefix("ParameterKey=")] = value
    return given


def environments(template, resolver, tuning=None):
    """{binary: {NAME: value}}: each function's environment as Lambda would give it."""
    globals_ = template["Globals"]["Function"]
    out = {}
    for binary, (_, function) in sorted(functions_of(template).items()):
        props = function["Properties"]
        variables = dict(globals_.get("Environment", {}).get("Variables", {}))
        variables.update(props.get("Environment", {}).get("Variables", {}))
        env = {}
        for name, node in variables.items():
            value = resolver.value(node)
            if value is not NO_VALUE:
                env[name] = value
        # What Lambda sets from the function's configuration.
        logging = props.get("LoggingConfig", globals_.get("LoggingConfig", {}))
        if logging.get("LogFormat") == "JSON":
            env["AWS_LAMBDA_LOG_FORMAT"] = "JSON"
            env["AWS_LAMBDA_LOG_LEVEL"] = logging.get("ApplicationLogLevel", "INFO")
        env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = resolver.value(props.get("MemorySize", globals_.get("MemorySize", 128)))
        for name, value in (tuning or {}).items():
            env[name] = value
        for name, value in env.items():
            if "\n" in value or "\0" in value:
                raise TemplateError(f"{binary}: {name} holds a line break")
        out[binary] = env
    return out


def local_resolver(template, resources, api_url, environ, stack_name="auth"):
    region = environ.get("AWS_REGION", "us-east-1")
    attributes = {"HttpApi.ApiEndpoint": api_url}
    for logical_id, physical in resources.items():
        if logical_id.endswith("Table"):
            attributes[f"{logical_id}.Arn"] = f"arn:aws:dynamodb:{region}:000000000000:table/{physical}"
    pseudo = {
        "AWS::Region": region,
        "AWS::StackName": stack_name,
        "AWS::AccountId": "000000000000",
        "AWS::Partition": "aws",
        "AWS::URLSuffix": "amazonaws.com",
    }
    parameters = parameter_values(template, given_parameters(template, environ))
    return Resolver(template, parameters, resources, attributes, pseudo)


def write(out_dir, envs, execs=None):
    os.makedirs(out_dir, exist_ok=True)
    for old in os.listdir(out_dir):
        if old.endswith((".env", ".exec")):
            os.remove(os.path.join(out_dir, old))
    for binary, env in envs.items():
        with open(os.path.join(out_dir, f"{binary}.env"), "w") as f:
            f.writelines(f"{name}={value}\n" for name, value in sorted(env.items()))
    for binary, command in (execs or {}).items():
        with open(os.path.join(out_dir, f"{binary}.exec"), "w") as f:
            f.writelines(f"{word}\n" for word in command)


def bootstrap_commands(template, bootstraps, prefix):
    """How to run each function's built bootstrap (sam build's .aws-sam/build/<LogicalId>/)."""
    commands = {}
    for binary, (logical_id, _) in functions_of(template).items():
        path = os.path.join(os.path.abspath(bootstraps), logical_id, "bootstrap")
        if not os.access(path, os.X_OK):
            raise TemplateError(f"{path} is missing: run `make build` first")
        commands[binary] = [*shlex.split(prefix), path]
    return commands


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", required=True, help="JSON: logical id -> local name or ARN")
    parser.add_argument("--api-url", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stack-name", default=os.environ.get("STACK_NAME", "auth"))
    parser.add_argument("--tuning", default="", help="comma-separated names the caller may set")
    parser.add_argument("--bootstraps", help="run these built bootstraps instead of cargo's builds")
    parser.add_argument("--exec", default="", help="with --bootstraps: the command that runs one")
    args = parser.parse_args()
    with open(args.resources) as f:
        resources = json.load(f)
    try:
        template = load_template()
        resolver = local_resolver(template, resources, args.api_url, os.environ, args.stack_name)
        tuning = {name: os.environ[name] for name in filter(None, args.tuning.split(",")) if name in os.environ}
        envs = environments(template, resolver, tuning)
        execs = bootstrap_commands(template, args.bootstraps, args.exec) if args.bootstraps else None
    except TemplateError as err:
        sys.exit(f"template.yaml: {err}")
    write(args.out, envs, execs)


if __name__ == "__main__":
    main()
