from lightning_nas.bench.cli import main

main()
