#!/bin/sh
# The runs behind reports/nb201/proxies*: each resumes where a killed one stopped (rerun this line).
# usage: [EXTRA="--workers 2"] sh reports/nb201/proxies/run.sh free|flops|data|fmnist
set -e
T=lightning_nas/benchmark/tables/nb201_proxies.csv.gz
R=reports/nb201/proxies
run() { OMP_NUM_THREADS=1 nice -n 10 python -m lightning_nas.benchmark proxies "$@" $EXTRA; }
case "$1" in
  free)   run --table nb201-cifar10 --proxies synflow,params --results $R/cifar10_free.results.jsonl --csv $T --json $R/cifar10_free.json ;;
  flops)  run --table nb201-cifar10 --proxies flops --results $R/cifar10_flops.results.jsonl --csv $T --json $R/cifar10_flops.json ;;
  data)   run --table nb201-cifar10 --proxies snip,grad_norm,jacob_cov,naswot --data FashionMNISTDataModule --results $R/cifar10_data.results.jsonl --csv $T --json $R/cifar10_data.json ;;
  fmnist) run --table nb201-fmnist --proxies synflow,snip,grad_norm,jacob_cov,naswot,params,flops --results $R/fmnist.results.jsonl --json $R/fmnist.json --plot $R/fmnist.png ;;
esac
