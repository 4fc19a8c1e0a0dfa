//! A function's execution role, read from the template: the policies attached to it, resolved
//! for local use, which the gateway enforces on every AWS call the function makes.

use serde_json::Value;

use super::intrinsics::Resolver;
use super::model::RoleSpec;
use super::source::Template;
use super::TemplateError;

impl Template {
    /// The role `function_id` runs as (its `Role` is `Fn::GetAtt [ROLE, Arn]`), with every
    /// policy attached to it; `None` when the role is not a resource of the template.
    pub(super) fn role_of(
        &self,
        function_id: &str,
        resolver: &Resolver<'_>,
    ) -> Result<Option<RoleSpec>, TemplateError> {
        let Some(function) = self.resource(function_id) else {
            return Ok(None);
        };
        let role_id = match function.properties.get("Role") {
            Some(Value::Object(role)) => role
                .get("Fn::GetAtt")
                .and_then(|att| match att {
                    Value::Array(parts) => parts.first().and_then(Value::as_str),
                    Value::String(text) => text.split('.').next(),
                    _ => None,
                })
                .map(str::to_owned),
            _ => None,
        };
        let Some(role_id) = role_id.filter(|id| {
            self.resource(id)
                .is_some_and(|r| r.kind == "AWS::IAM::Role")
        }) else {
            return Ok(None);
        };
        let Some(role) = self.resource(&role_id) else {
            return Ok(None);
        };
        let name = resolver
            .physical_name(&role_id)
            .map_err(|source| self.resolve_error(&role_id, "RoleName", source))?;
        let mut spec = RoleSpec {
            logical_id: role_id.clone(),
            name,
            ..RoleSpec::default()
        };
        let resolve = |owner: &str, property: &str, value: &Value| {
            resolver
                .resolve(value)
                .map_err(|source| self.resolve_error(owner, property, source))
        };
        // Inline policies of the role itself.
        if let Some(Value::Array(inline)) = role.properties.get("Policies") {
            for (i, policy) in inline.iter().enumerate() {
                let name = policy
                    .get("PolicyName")
                    .and_then(Value::as_str)
                    .map_or_else(|| format!("{role_id}.Policies[{i}]"), str::to_owned);
                if let Some(document) = policy.get("PolicyDocument") {
                    let property = format!("Policies[{i}].PolicyDocument");
                    spec.policies
                        .push((name, resolve(&role_id, &property, document)?));
                }
            }
        }
        // Managed policies by ARN: those of the template are read below, AWS's cannot be.
        if let Some(Value::Array(arns)) = role.properties.get("ManagedPolicyArns") {
            for arn in arns {
                let is_template_policy = arn
                    .get("Ref")
                    .and_then(Value::as_str)
                    .and_then(|id| self.resource(id))
                    .is_some_and(|r| r.kind == "AWS::IAM::ManagedPolicy");
                if !is_template_policy {
                    let arn = resolver.resolve_string(arn).map_err(|source| {
                        self.resolve_error(&role_id, "ManagedPolicyArns", source)
                    })?;
                    spec.managed_policy_arns.push(arn);
                }
            }
        }
        // Policies of the template that name the role (`Roles: [{Ref: ROLE}]`), or that the
        // role names in `ManagedPolicyArns`.
        for (policy_id, policy) in self
            .resources
            .iter()
            .filter(|(_, r)| r.kind == "AWS::IAM::Policy" || r.kind == "AWS::IAM::ManagedPolicy")
        {
            let attached_by_policy = matches!(policy.properties.get("Roles"), Some(Value::Array(roles))
                if roles.iter().any(|r| r.get("Ref").and_then(Value::as_str) == Some(&role_id)));
            let attached_by_role = matches!(role.properties.get("ManagedPolicyArns"), Some(Value::Array(arns))
                if arns.iter().any(|a| a.get("Ref").and_then(Value::as_str) == Some(policy_id)));
            if !(attached_by_policy || attached_by_role) {
                continue;
            }
            if let Some(document) = policy.properties.get("PolicyDocument") {
                spec.policies.push((
                    policy_id.clone(),
                    resolve(policy_id, "PolicyDocument", document)?,
                ));
            }
        }
        Ok(Some(spec))
    }
}
