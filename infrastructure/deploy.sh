#!/usr/bin/env bash
# Create or update the Helix ECS stack (infrastructure/helix-ecs.yaml), wait for it, print
# Helix's URL.  Idempotent: a second run with the same inputs changes nothing and exits 0.
#
# With nothing but AWS credentials and provider keys in the environment:
#   OPENAI_API_KEY=sk-... ANTHROPIC_API_KEY=sk-ant-... ./infrastructure/deploy.sh
# it stores every *_API_KEY variable in the Secrets Manager secret
# helix-<environment>-provider-keys (created, or updated when it exists), and with no
# IMAGE_URI builds the image and pushes it to the ECR repository "helix" (created when
# missing) -- which needs a Docker engine; without one it stops and says to set IMAGE_URI.
#
#   IMAGE_URI=123456789012.dkr.ecr.us-east-1.amazonaws.com/helix:abc123 \
#   PROVIDER_KEYS_SECRET_ARN=arn:aws:secretsmanager:us-east-1:123456789012:secret:helix-keys-AbCdEf \
#   ./infrastructure/deploy.sh [staging|production]
#
# Inputs (environment):
#   IMAGE_URI                 the image to run; unset: build and push to ECR (needs Docker)
#   ECR_REPOSITORY            the ECR repository for that (default helix)
#   IMAGE_TAG                 its tag (default: the git commit, else a timestamp)
#   PROVIDER_KEYS_SECRET_ARN  Secrets Manager secret with {"OPENAI_API_KEY": ...}; unset:
#                             made from the *_API_KEY variables (SECRET_NAME, default
#                             helix-<environment>-provider-keys)
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
#   USE_OPENAI_KEY, USE_ANTHROPIC_KEY, USE_GEMINI_KEY, ... true/false: inject that field of
#                             the secret (default: true for the *_API_KEY variables set)
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

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT

# Provider keys the stack can inject (one template parameter each): NAME_API_KEY -> UseXKey.
known_keys="OPENAI:OpenAI ANTHROPIC:Anthropic GEMINI:Gemini COHERE:Cohere GROQ:Groq
MISTRAL:Mistral TOGETHER:Together DEEPSEEK:DeepSeek PERPLEXITY:Perplexity
FIREWORKS:Fireworks XAI:Xai OPENROUTER:OpenRouter"

# 1. The provider keys secret: given, or made from the *_API_KEY variables.
found=$(env | sed -n 's/^\([A-Z][A-Z0-9_]*_API_KEY\)=.*/\1/p' | sort | tr '\n' ' ')
found=${found% }
secret_arn=${PROVIDER_KEYS_SECRET_ARN:-}
if [ -z "$secret_arn" ]; then
  [ -n "$found" ] || die "set provider keys (e.g. OPENAI_API_KEY, ANTHROPIC_API_KEY) or PROVIDER_KEYS_SECRET_ARN"
  secret_name=${SECRET_NAME:-helix-$environment-provider-keys}
  umask 077
  {
    sep="{"
    for name in $found; do
      value=$(printenv "$name")
      case $value in *'"'*|*\\*) die "$name contains a quote or backslash" ;; esac
      printf '%s"%s": "%s"' "$sep" "$name" "$value"
      sep=", "
    done
    printf '}\n'
  } >"$workdir/secret.json"
  if secret_arn=$(aws_ secretsmanager describe-secret --secret-id "$secret_name" \
      --query ARN --output text 2>/dev/null); then
    aws_ secretsmanager put-secret-value --secret-id "$secret_arn" \
      --secret-string "file://$workdir/secret.json" >/dev/null
    echo "deploy.sh: updated secret $secret_name with: $found" >&2
  else
    secret_arn=$(aws_ secretsmanager create-secret --name "$secret_name" \
      --description "Helix provider keys ($environment)" \
      --secret-string "file://$workdir/secret.json" --query ARN --output text)
    echo "deploy.sh: created secret $secret_name with: $found" >&2
  fi
  rm -f "$workdir/secret.json"
fi
use_param() {  # UseXKey=true|false for NAME: USE_NAME_KEY, else whether NAME_API_KEY is set
  local var="USE_${1}_KEY" default=false
  if [ -z "${PROVIDER_KEYS_SECRET_ARN:-}" ]; then
    case " $found " in *" ${1}_API_KEY "*) default=true ;; esac
  elif [ "$1" = OPENAI ]; then
    default=true  # the stack's historical default with a given secret
  fi
  printf 'Use%sKey=%s' "$2" "${!var:-$default}"
}
for name in $found; do
  case " $(echo "$known_keys" | tr '\n' ' ') " in
    *" ${name%_API_KEY}:"*) ;;
    *) echo "deploy.sh: $name is in the secret but Helix reads no such variable; not injected" >&2 ;;
  esac
done

# 2. The image: given, or built here and pushed to ECR.
image=${IMAGE_URI:-}
if [ -z "$image" ]; then
  if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    die "set IMAGE_URI to a Helix image in a registry ECS can pull (no Docker engine here to build and push one)"
  fi
  repo=${ECR_REPOSITORY:-helix}
  repo_uri=$(aws_ ecr describe-repositories --repository-names "$repo" \
    --query 'repositories[0].repositoryUri' --output text 2>/dev/null) ||
    repo_uri=$(aws_ ecr create-repository --repository-name "$repo" \
      --image-scanning-configuration scanOnPush=true \
      --query 'repository.repositoryUri' --output text)
  tag=${IMAGE_TAG:-$(git -C "$here/.." rev-parse --short=12 HEAD 2>/dev/null || date -u +%Y%m%d%H%M%S)}
  image="$repo_uri:$tag"
  echo "deploy.sh: building $image" >&2
  docker build -t "$image" "$here/.." >&2
  aws_ ecr get-login-password | docker login --username AWS --password-stdin "${repo_uri%%/*}" >&2
  docker push "$image" >&2
fi

echo "deploy.sh: stack $stack in $region (image $image, vpc $vpc_id)" >&2

params=(
  "EnvironmentName=$environment"
  "ImageUri=$image"
  "VpcId=$vpc_id"
  "LoadBalancerSubnetIds=$subnets"
  "TaskSubnetIds=$task_subnets"
  "AssignPublicIp=${ASSIGN_PUBLIC_IP:-ENABLED}"
  "LoadBalancerScheme=${LB_SCHEME:-internal}"
  "AllowedCidr=${ALLOWED_CIDR:-10.0.0.0/8}"
  "CertificateArn=${CERTIFICATE_ARN:-}"
  "ProviderKeysSecretArn=$secret_arn"
  "DesiredCount=${DESIRED_COUNT:-2}"
  "HelixWorkers=${HELIX_WORKERS:-2}"
  "TaskCpu=${TASK_CPU:-256}"
  "TaskMemory=${TASK_MEMORY:-512}"
  "EnableRedis=${ENABLE_REDIS:-false}"
)
for kv in $known_keys; do
  params+=("$(use_param "${kv%%:*}" "${kv#*:}")")
done
# Parameters go in a JSON file: list values (subnets) contain commas.
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
