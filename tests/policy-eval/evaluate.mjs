// Evaluates IAM requests against identity policies with @cloud-copilot/iam-simulate, an IAM
// policy evaluator independent of forcemfa. Reads one JSON object on stdin:
//   { "policies": { NAME: DOCUMENT, ... },
//     "requests": [ { "policies": [NAME, ...], "principal": ARN, "action": "iam:GetUser",
//                     "resource": ARN or "*", "account": ID, "context": { KEY: VALUE } } ] }
// and prints one JSON array, a decision per request in order: "Allowed", "ExplicitlyDenied",
// "ImplicitlyDenied", or { "error": ... } when the simulator rejects the request or a policy.
import { runSimulation } from '@cloud-copilot/iam-simulate'

let input = ''
for await (const chunk of process.stdin) input += chunk
const { policies, requests } = JSON.parse(input)

const decisions = []
for (const r of requests) {
  const response = await runSimulation(
    {
      identityPolicies: r.policies.map((name) => ({ name, policy: policies[name] })),
      serviceControlPolicies: [],
      resourceControlPolicies: [],
      request: {
        principal: r.principal,
        action: r.action,
        resource: { resource: r.resource, accountId: r.account },
        contextVariables: r.context
      }
    },
    {}
  )
  decisions.push(
    response.resultType === 'error' ? { error: response.errors } : response.overallResult
  )
}
process.stdout.write(JSON.stringify(decisions) + '\n')
