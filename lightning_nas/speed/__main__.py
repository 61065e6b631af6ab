from lightning_nas.speed.cli import main

main()
