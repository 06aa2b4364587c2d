#!/usr/bin/env bash
# Create or update the Helix ECS stack (infrastructure/helix-ecs.yaml), wait for it, print
# Helix's URL.  Idempotent: a second run with the same inputs changes nothing and exits 0.
#
#   IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/helix:abc123 \
#   PROVIDER_KEYS_SECRET_ARN=arn:aws:secretsmanager:us-east-1:123456789012:secret:helix-keys-AbCdEf \
#   ./infrastructure/deploy.sh [staging|production]
#
# Inputs (environment):
#   IMAGE_URI                 required: the image to run
#   PROVIDER_KEYS_SECRET_ARN  required: Secrets Manager secret with {"OPENAI_API_KEY": ...}
#   ENVIRONMENT               staging (or the first argument)
#   STACK_NAME                helix-$ENVIRONMENT
#   AWS_REGION                us-east-1 (or AWS_DEFAULT_REGION)
#   VPC_ID, SUBNET_IDS        default: the account's default VPC and its subnets
#                             (SUBNET_IDS comma-separated; used for the ALB and the tasks)
#   TASK_SUBNET_IDS           default: SUBNET_IDS
#   LB_SCHEME                 internal | internet-facing (default internal)
#   ALLOWED_CIDR              who may reach the load balancer (default 10.0.0.0/8)
#   ASSIGN_PUBLIC_IP          ENABLED | DISABLED (default ENABLED)
#   CERTIFICATE_ARN           ACM certificate: HTTPS on 443 instead of HTTP on 80
#   USE_OPENAI_KEY, USE_ANTHROPIC_KEY   true/false: inject that field of the secret
#   DESIRED_COUNT (2), HELIX_WORKERS (2), TASK_CPU (256), TASK_MEMORY (512), ENABLE_REDIS (false)
#   AWS_ENDPOINT_URL          another AWS API endpoint (the tests use moto's server)
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
template="$here/helix-ecs.yaml"

environment=${1:-${ENVIRONMENT:-staging}}
stack=${STACK_NAME:-helix-$environment}
region=${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-1}}
export AWS_REGION=$region AWS_DEFAULT_REGION=$region AWS_PAGER=""

die() {
  echo "deploy.sh: $*" >&2
  exit 1
}

[ -n "${IMAGE_URI:-}" ] || die "set IMAGE_URI to the Helix image to run"
[ -n "${PROVIDER_KEYS_SECRET_ARN:-}" ] || die "set PROVIDER_KEYS_SECRET_ARN (see docs/DEPLOY.md)"
command -v aws >/dev/null 2>&1 || die "the aws CLI is not installed (pip install awscli)"

# The aws CLI (botocore >= 1.31) honours AWS_ENDPOINT_URL by itself; pass it explicitly too so
# an older CLI cannot silently reach the real AWS.
aws_() {
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then
    aws --endpoint-url "$AWS_ENDPOINT_URL" "$@"
  else
    aws "$@"
  fi
}

vpc_id=${VPC_ID:-}
if [ -z "$vpc_id" ]; then
  vpc_id=$(aws_ ec2 describe-vpcs --filters Name=isDefault,Values=true \
    --query 'Vpcs[0].VpcId' --output text)
  [ -n "$vpc_id" ] && [ "$vpc_id" != None ] || die "no default VPC in $region: set VPC_ID and SUBNET_IDS"
fi
subnets=${SUBNET_IDS:-}
if [ -z "$subnets" ]; then
  subnets=$(aws_ ec2 describe-subnets --filters "Name=vpc-id,Values=$vpc_id" \
    --query 'Subnets[].SubnetId' --output text | tr -s '\t ' ',')
  [ -n "$subnets" ] && [ "$subnets" != None ] || die "no subnets in $vpc_id: set SUBNET_IDS"
fi
task_subnets=${TASK_SUBNET_IDS:-$subnets}

echo "deploy.sh: stack $stack in $region (image $IMAGE_URI, vpc $vpc_id)" >&2

params=(
  "EnvironmentName=$environment"
  "ImageUri=$IMAGE_URI"
  "VpcId=$vpc_id"
  "LoadBalancerSubnetIds=$subnets"
  "TaskSubnetIds=$task_subnets"
  "AssignPublicIp=${ASSIGN_PUBLIC_IP:-ENABLED}"
  "LoadBalancerScheme=${LB_SCHEME:-internal}"
  "AllowedCidr=${ALLOWED_CIDR:-10.0.0.0/8}"
  "CertificateArn=${CERTIFICATE_ARN:-}"
  "ProviderKeysSecretArn=$PROVIDER_KEYS_SECRET_ARN"
  "UseOpenAIKey=${USE_OPENAI_KEY:-true}"
  "UseAnthropicKey=${USE_ANTHROPIC_KEY:-false}"
  "DesiredCount=${DESIRED_COUNT:-2}"
  "HelixWorkers=${HELIX_WORKERS:-2}"
  "TaskCpu=${TASK_CPU:-256}"
  "TaskMemory=${TASK_MEMORY:-512}"
  "EnableRedis=${ENABLE_REDIS:-false}"
)
# Parameters go in a JSON file: list values (subnets) contain commas.
workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
{
  sep="["
  for kv in "${params[@]}"; do
    case $kv in *'"'*|*\\*) die "unexpected quote or backslash in ${kv%%=*}" ;; esac
    printf '%s{"ParameterKey": "%s", "ParameterValue": "%s"}' "$sep" "${kv%%=*}" "${kv#*=}"
    sep=", "
  done
  printf ']\n'
} >"$workdir/parameters.json"
stack_args=(
  --stack-name "$stack"
  --template-body "file://$template"
  --parameters "file://$workdir/parameters.json"
  --capabilities CAPABILITY_IAM
  --tags "Key=app,Value=helix" "Key=environment,Value=$environment"
)

stack_status() {
  aws_ cloudformation describe-stacks --stack-name "$stack" \
    --query 'Stacks[0].StackStatus' --output text 2>/dev/null || echo NONE
}

status=$(stack_status)
case $status in
  *_IN_PROGRESS)
    die "stack $stack is $status: wait for it to finish, then run this again" ;;
  ROLLBACK_COMPLETE)
    # A first create that failed leaves a stack that can only be deleted.
    echo "deploy.sh: $stack is ROLLBACK_COMPLETE from a failed create; deleting it" >&2
    aws_ cloudformation delete-stack --stack-name "$stack"
    aws_ cloudformation wait stack-delete-complete --stack-name "$stack"
    status=NONE ;;
esac

if [ "$status" = NONE ]; then
  echo "deploy.sh: creating $stack" >&2
  aws_ cloudformation create-stack "${stack_args[@]}" --on-failure ROLLBACK >/dev/null
  aws_ cloudformation wait stack-create-complete --stack-name "$stack" ||
    die "creating $stack failed: aws cloudformation describe-stack-events --stack-name $stack"
else
  echo "deploy.sh: updating $stack (now $status)" >&2
  if ! out=$(aws_ cloudformation update-stack "${stack_args[@]}" 2>&1); then
    case $out in
      *"No updates are to be performed"*) echo "deploy.sh: $stack is up to date" >&2 ;;
      *) die "update of $stack refused: $out" ;;
    esac
  else
    aws_ cloudformation wait stack-update-complete --stack-name "$stack" ||
      die "updating $stack failed: aws cloudformation describe-stack-events --stack-name $stack"
  fi
fi

status=$(aws_ cloudformation describe-stacks --stack-name "$stack" \
  --query 'Stacks[0].StackStatus' --output text)
case $status in
  CREATE_COMPLETE|UPDATE_COMPLETE) ;;
  *) die "stack $stack is $status" ;;
esac
url=$(aws_ cloudformation describe-stacks --stack-name "$stack" \
  --query "Stacks[0].Outputs[?OutputKey=='ServiceUrl'].OutputValue" --output text)
[ -n "$url" ] && [ "$url" != None ] || die "stack $stack has no ServiceUrl output"
echo "deploy.sh: $stack is $status" >&2
echo "$url"
